"""A Modbus TCP server (pymodbus) answering every read from a register image held in Python.

The simulated site serves its SunSpec map through it, and tests serve vendors' register maps:
reads only, holding and input registers alike (one shared block), on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import threading

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

# only a hang bound: a loaded machine may take seconds to bring a server thread up
STARTUP_BOUND_S = 120.0


class RegisterImageServer:
    def __init__(self, size: int, unit: int = 1, host: str = "127.0.0.1", port: int = 0,
                 tick_s: float = 1.0):
        self.regs = [0] * size  # what every read is answered from
        self.unit, self.host = unit, host
        self.port = port or free_port(host)
        self.tick_s = tick_s
        self._server: ModbusTcpServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def set(self, address: int, values: list[int]) -> None:
        self.regs[address:address + len(values)] = values

    def before_answer(self) -> None:
        """Called before each request is answered (a subclass refreshes the image here)."""

    def tick(self) -> None:
        """Called every `tick_s` while the server runs."""

    async def _answer(self, function_code: int, start_address: int, address: int, count: int,
                      current: list[int], set_values: list[int] | None) -> None:
        self.before_answer()
        first = address - start_address
        current[first:first + count] = self.regs[address:address + count]

    def start(self) -> RegisterImageServer:
        ready = threading.Event()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name=f"modbus-server-{self.port}")
        self._thread.start()
        if not ready.wait(STARTUP_BOUND_S):
            raise RuntimeError(f"the Modbus server on {self.host}:{self.port} did not start")
        return self

    def _run(self, ready: threading.Event) -> None:
        device = SimDevice(self.unit, [SimData(0, len(self.regs), 0, DataType.REGISTERS,
                                               readonly=True)], action=self._answer)

        async def main() -> None:
            self._server = ModbusTcpServer(device, address=(self.host, self.port))
            serving = asyncio.ensure_future(self._server.serve_forever())
            await asyncio.sleep(0.05)  # let it bind before anyone is told it is up
            ready.set()
            while not self._stop.is_set():
                await asyncio.sleep(self.tick_s)
                if not self._stop.is_set():
                    self.tick()
            await self._server.shutdown()
            serving.cancel()

        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10 + self.tick_s)
            self._thread = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
