"""The store: one SQLite file per rig (`store`), its numbered migrations (`migrations`), and online
backup, restore and the one-agent lock (`backup`)."""
