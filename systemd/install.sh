#!/usr/bin/env bash
# Install, upgrade or remove sunrig on a rig.
#
#   sudo systemd/install.sh                 install or upgrade, enable and start the service
#   sudo systemd/install.sh --uninstall     remove the program and unit; keep config and data
#   sudo systemd/install.sh --uninstall --purge   remove config, data and the user too
#
# Options: --prefix DIR (install under DIR instead of /, for staging and tests: no user, no
# systemctl), --dry-run (print what would be done, change nothing), --no-start, --source DIR
# (the sunrig source to install; default: this checkout), --python PY (default python3).
# Upgrading keeps /etc/sunrig and /var/lib/sunrig and migrates the store before restarting.
set -euo pipefail

PREFIX=""
DRY_RUN=0
UNINSTALL=0
PURGE=0
START=1
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
USER_NAME=sunrig

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$(realpath -m "$2")"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    --no-start) START=0; shift ;;
    --source) SOURCE="$(realpath "$2")"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

OPT="$PREFIX/opt/sunrig"
VENV="$OPT/venv"
CONF_DIR="$PREFIX/etc/sunrig"
CONF="$CONF_DIR/sunrig.toml"
STATE="$PREFIX/var/lib/sunrig"
UNIT_DIR="$PREFIX/etc/systemd/system"
UNIT="$UNIT_DIR/sunrig.service"
# the root helper that sets GPU power limits for the unprivileged agent, socket-activated
HELPER_UNITS="sunrig-powercap.socket sunrig-powercap.service"
SYSTEM=0  # only a real install (no prefix) touches users and systemd
[ -z "$PREFIX" ] && SYSTEM=1

run() {  # print every action; do it unless this is a dry run
  echo "+ $*"
  [ "$DRY_RUN" -eq 1 ] || "$@"
}

write_file() {  # write_file PATH MODE < content
  local path="$1" mode="$2" content
  content="$(cat)"
  echo "+ write $path (mode $mode)"
  if [ "$DRY_RUN" -eq 1 ]; then return 0; fi
  printf '%s\n' "$content" > "$path.new"
  chmod "$mode" "$path.new"
  mv "$path.new" "$path"
}

service_active() { [ "$SYSTEM" -eq 1 ] && systemctl is-active --quiet sunrig 2>/dev/null; }

uninstall() {
  if [ "$SYSTEM" -eq 1 ]; then
    run systemctl disable --now sunrig || true
    run systemctl disable --now sunrig-powercap.socket sunrig-powercap.service || true
  fi
  run rm -f "$UNIT"
  for helper_unit in $HELPER_UNITS; do run rm -f "$UNIT_DIR/$helper_unit"; done
  if [ "$SYSTEM" -eq 1 ]; then run systemctl daemon-reload; fi
  if [ -x "$VENV/bin/python" ] && [ -f "$CONF" ]; then  # sunrig's hold pods, where [kube] is on
    run "$VENV/bin/python" -m node.cluster.kube "$CONF" || echo "kube: remove them with kubectl" \
      "delete pods,priorityclasses -A -l app.kubernetes.io/managed-by=sunrig"
  fi
  run rm -rf "$OPT"
  if [ "$PURGE" -eq 1 ]; then
    run rm -rf "$CONF_DIR" "$STATE" "$PREFIX/var/log/sunrig"
    if [ "$SYSTEM" -eq 1 ] && id "$USER_NAME" >/dev/null 2>&1; then run userdel "$USER_NAME"; fi
  else
    echo "kept $CONF_DIR and $STATE (use --purge to remove them)"
  fi
}

create_user() {
  if [ "$SYSTEM" -eq 0 ]; then echo "skip: user $USER_NAME (not with --prefix)"; return 0; fi
  if id "$USER_NAME" >/dev/null 2>&1; then return 0; fi
  run useradd --system --no-create-home --home-dir /var/lib/sunrig --shell /usr/sbin/nologin \
    --user-group "$USER_NAME"
  if getent group video >/dev/null; then run usermod -aG video "$USER_NAME"; fi
}

starter_config() {
  if [ -f "$CONF" ]; then
    echo "keep: $CONF"
    return
  fi
  # The documented example: the real GPUs, no site source and no market yet, so the service
  # runs no simulated part and says what it still needs. A staged layout (--prefix) keeps its
  # store under the prefix, told in a [store] table of its own: the example's is commented out.
  {
    cat "$SOURCE/sunrig.example.toml"
    if [ "$STATE" != /var/lib/sunrig ]; then  # a TOML string: \ and " escaped
      printf '\n# Where this layout keeps its data (install.sh --prefix).\n[store]\npath = "%s"\n' \
        "$(printf '%s' "$STATE/sunrig.db" | sed 's/[\\"]/\\&/g')"
    fi
  } | write_file "$CONF" 0640
}

render_unit() {
  sed -e "s|/opt/sunrig|$OPT|g" -e "s|/etc/sunrig|$CONF_DIR|g" \
    "$SOURCE/systemd/sunrig.service" | write_file "$UNIT" 0644
}

render_helper_units() {
  local helper_unit
  for helper_unit in $HELPER_UNITS; do
    sed -e "s|/opt/sunrig|$OPT|g" "$SOURCE/systemd/$helper_unit" \
      | write_file "$UNIT_DIR/$helper_unit" 0644
  done
}

remove_old_bid_script() {
  # Earlier versions installed a Python bid-price wrapper here, which the Akash provider's
  # container cannot run; its script now comes from `sunrig akash bid-script` (README).
  if [ -e "$OPT/bin/akash-bid-price" ]; then run rm -f "$OPT/bin/akash-bid-price"; fi
}

install() {
  local was_running=0
  if service_active; then was_running=1; fi
  create_user
  run mkdir -p "$OPT" "$CONF_DIR" "$STATE" "$UNIT_DIR"
  [ -x "$VENV/bin/python" ] || run "$PYTHON" -m venv "$VENV"
  run "$VENV/bin/pip" install --quiet --upgrade "$SOURCE"
  run cp "$SOURCE/README.md" "$SOURCE/sunrig.example.toml" "$OPT/"
  starter_config
  run "$VENV/bin/sunrig" config check "$CONF"
  if [ "$was_running" -eq 1 ]; then run systemctl stop sunrig; fi  # the agent holds the store
  run "$VENV/bin/sunrig" migrate --config "$CONF"
  if [ "$SYSTEM" -eq 1 ]; then
    run chown -R "$USER_NAME:$USER_NAME" "$STATE"
    run chown root:"$USER_NAME" "$CONF_DIR" "$CONF"
    run chmod 0750 "$CONF_DIR"
  fi
  render_unit
  render_helper_units
  remove_old_bid_script
  if [ "$SYSTEM" -eq 1 ]; then
    run systemctl daemon-reload
    run systemctl enable --now sunrig-powercap.socket
    run systemctl try-restart sunrig-powercap.service  # an upgrade's new helper, if it ran
    run systemctl enable sunrig
    if [ "$START" -eq 1 ] || [ "$was_running" -eq 1 ]; then run systemctl restart sunrig; fi
  fi
  echo "sunrig installed in $OPT; config $CONF; data $STATE"
  next_steps
}

dashboard_url() {  # as the config serves it; a dry run has no program to ask
  if [ "$DRY_RUN" -eq 1 ]; then echo "http://127.0.0.1:8080"; return; fi
  "$VENV/bin/python" -c 'import sys
from node.cli.commands import dashboard_url
from node.config import load_config
print(dashboard_url(load_config(sys.argv[1])))' "$CONF"
}

next_steps() {
  local url
  url="$(dashboard_url)"
  echo
  echo "Next steps:"
  echo "  1. Describe your site (inverter, battery, tariff, markets) in $CONF;"
  echo "     check it with: $VENV/bin/sunrig config check $CONF"
  if [ "$SYSTEM" -eq 1 ]; then
    echo "  2. Then: systemctl restart sunrig   (its log: journalctl -u sunrig -f)"
  else
    echo "  2. Then run it: $VENV/bin/sunrig run --config $CONF"
  fi
  echo "  3. Open the dashboard: $url"
  echo "     The first change there asks you to set the owner's password."
  echo "  The README in $OPT tells more."
}

if [ "$SYSTEM" -eq 1 ] && [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or use --prefix DIR / --dry-run)" >&2
  exit 1
fi
if [ "$UNINSTALL" -eq 1 ]; then uninstall; else install; fi
