"""An Arduino running the stock StandardFirmata sketch, emulated on a pty.

:class:`FirmataEmulator` speaks the Firmata protocol 2.5 (firmata/protocol on GitHub,
``protocol.md``; the sketch is Arduino IDE > File > Examples > Firmata > StandardFirmata)
over a :class:`~labbench.drivers.transport.pty.PtyEmulator`, byte for byte as the sketch
does on an Arduino Uno:

- on boot (and on every reconnect, which on a real board is a reset) it sends
  ``REPORT_VERSION`` (``F9 02 05``) and the firmware report
  (``F0 79 02 05 <"StandardFirmata.ino" as 7-bit pairs> F7``);
- it answers ``REPORT_VERSION`` (``F9``), ``QUERY_FIRMWARE`` (``F0 79 F7``),
  ``CAPABILITY_QUERY`` (``F0 6B F7``, the Uno's 20 pins: digital 2..19, PWM on
  3, 5, 6, 9, 10, 11, analog on 14..19, I2C on 18, 19; 0 and 1 are the serial port),
  ``ANALOG_MAPPING_QUERY`` (``F0 69 F7``) and ``PIN_STATE_QUERY`` (``F0 6D pin F7``);
- it executes ``SET_PIN_MODE`` (``F4 pin mode``), ``ANALOG_MESSAGE`` (``E0|pin lsb msb``:
  an 8-bit PWM duty on a PWM pin), ``EXTENDED_ANALOG`` (``F0 6F pin v0 v1.. F7``),
  ``DIGITAL_MESSAGE`` (``90|port lsb msb``), ``SET_DIGITAL_PIN_VALUE`` (``F5 pin v``),
  ``REPORT_ANALOG``/``REPORT_DIGITAL`` (``C0|pin on``, ``D0|port on``: remembered, the
  emulator has no inputs to report), ``SAMPLING_INTERVAL`` (``F0 7A lsb msb F7``) and
  ``SYSTEM_RESET`` (``FF``), and ignores other sysex commands as the sketch does.

:attr:`FirmataEmulator.duty` is the PWM duty (0..1) of every pin in PWM mode (a pin in
OUTPUT mode set HIGH counts as duty 1); :attr:`FirmataEmulator.history` records every
change with its wall-clock time. A dropped connection (:meth:`PtyEmulator.drop`) is an
unplugged USB-powered board: its pins go low, so every duty is 0 while it is away, and it
boots afresh (all pins inputs, duty 0) when it comes back.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..transport.pty import PtyEmulator

# Firmata command bytes (Firmata.h / FirmataConstants.h)
DIGITAL_MESSAGE = 0x90
ANALOG_MESSAGE = 0xE0
REPORT_ANALOG = 0xC0
REPORT_DIGITAL = 0xD0
START_SYSEX = 0xF0
SET_PIN_MODE = 0xF4
SET_DIGITAL_PIN_VALUE = 0xF5
END_SYSEX = 0xF7
REPORT_VERSION = 0xF9
SYSTEM_RESET = 0xFF
# sysex commands
EXTENDED_ANALOG = 0x6F
PIN_STATE_QUERY = 0x6D
PIN_STATE_RESPONSE = 0x6E
CAPABILITY_QUERY = 0x6B
CAPABILITY_RESPONSE = 0x6C
ANALOG_MAPPING_QUERY = 0x69
ANALOG_MAPPING_RESPONSE = 0x6A
REPORT_FIRMWARE = 0x79
SAMPLING_INTERVAL = 0x7A
# pin modes
INPUT, OUTPUT, ANALOG, PWM, SERVO, I2C, PULLUP = 0x00, 0x01, 0x02, 0x03, 0x04, 0x06, 0x0B

#: StandardFirmata 2.5.x reports protocol version 2.5 and its sketch's file name
PROTOCOL_VERSION = (2, 5)
FIRMWARE_NAME = "StandardFirmata.ino"
#: an Arduino Uno (Boards.h): 20 pins, 0/1 = serial, PWM pins, analog A0..A5 = 14..19, I2C SDA/SCL = 18/19
UNO_PINS = 20
UNO_PWM = (3, 5, 6, 9, 10, 11)
UNO_ANALOG = tuple(range(14, 20))
UNO_I2C = (18, 19)
#: channel messages: command nibble -> data bytes that follow
_CHANNEL_DATA = {DIGITAL_MESSAGE: 2, ANALOG_MESSAGE: 2, REPORT_ANALOG: 1, REPORT_DIGITAL: 1}
#: system messages: command byte -> data bytes that follow
_SYSTEM_DATA = {SET_PIN_MODE: 2, SET_DIGITAL_PIN_VALUE: 2, REPORT_VERSION: 0, SYSTEM_RESET: 0}


def capability_response() -> bytes:
    """StandardFirmata's CAPABILITY_RESPONSE for an Uno (order of modes as in the sketch)."""
    out = bytearray([START_SYSEX, CAPABILITY_RESPONSE])
    for pin in range(UNO_PINS):
        if pin >= 2:                                  # IS_PIN_DIGITAL
            out += bytes([INPUT, 1, PULLUP, 1, OUTPUT, 1])
        if pin in UNO_ANALOG:
            out += bytes([ANALOG, 10])
        if pin in UNO_PWM:
            out += bytes([PWM, 8])
        if pin >= 2:
            out += bytes([SERVO, 14])
        if pin in UNO_I2C:
            out += bytes([I2C, 1])
        out.append(0x7F)
    out.append(END_SYSEX)
    return bytes(out)


def analog_mapping_response() -> bytes:
    """ANALOG_MAPPING_RESPONSE: 127 for a pin without analog input, else its channel."""
    return bytes([START_SYSEX, ANALOG_MAPPING_RESPONSE,
                  *[(p - UNO_ANALOG[0]) if p in UNO_ANALOG else 0x7F for p in range(UNO_PINS)], END_SYSEX])


def firmware_report(name: str = FIRMWARE_NAME, version: tuple[int, int] = PROTOCOL_VERSION) -> bytes:
    """REPORT_FIRMWARE: major, minor, then the name's characters as 7-bit LSB/MSB pairs."""
    body = bytearray()
    for ch in name.encode("ascii"):
        body += bytes([ch & 0x7F, ch >> 7])
    return bytes([START_SYSEX, REPORT_FIRMWARE, *version, *body, END_SYSEX])


class FirmataEmulator(PtyEmulator):
    """An Arduino Uno running StandardFirmata, served on a pty.

    Parameters
    ----------
    firmware_name : str
        What the firmware report names (the sketch's file name).
    version : (int, int)
        The Firmata protocol version reported.
    **pty_kwargs
        :class:`~labbench.drivers.transport.pty.PtyEmulator` options (``link``, ...).
    """

    def __init__(self, *, firmware_name: str = FIRMWARE_NAME, version: tuple[int, int] = PROTOCOL_VERSION,
                 **pty_kwargs: Any) -> None:
        pty_kwargs.setdefault("name", "firmata-emulator")
        super().__init__(**pty_kwargs)
        self.firmware_name = firmware_name
        self.version = tuple(version)
        self._state = threading.RLock()
        self._buf = bytearray()
        self.modes: dict[int, int] = {}
        self.values: dict[int, int] = {}
        self.reporting: dict[str, dict[int, int]] = {"analog": {}, "digital": {}}
        self.sampling_interval_ms = 19
        self.boots = 0
        self.history: list[tuple[float, int, float]] = []     # (time.monotonic(), pin, duty)
        self.received: list[tuple[int, ...]] = []              # every decoded message, in order
        self.stats = dict.fromkeys(("messages", "pwm_writes", "unknown", "resets"), 0)

    # -- what the motors see ------------------------------------------------------------------
    @property
    def duty(self) -> dict[int, float]:
        """Duty (0..1) of every pin driven as an output; 0 for all while unplugged."""
        with self._state:
            if not self.connected:
                return {p: 0.0 for p in self.modes}
            return {p: self._duty_of(p) for p in self.modes}

    def duty_of(self, pins: list[int]) -> list[float]:
        """Duty (0..1) of each of ``pins`` (0 for a pin not driven)."""
        d = self.duty
        return [d.get(p, 0.0) for p in pins]

    def _duty_of(self, pin: int) -> float:
        mode, value = self.modes.get(pin, INPUT), self.values.get(pin, 0)
        if mode == PWM:
            return min(value, 255) / 255.0
        if mode == OUTPUT:
            return 1.0 if value else 0.0
        return 0.0

    # -- life cycle ---------------------------------------------------------------------------
    def on_connect(self) -> None:
        """A (re)plugged board boots: all pins inputs, then version and firmware reports."""
        with self._state:
            self._reset()
            self.boots += 1
        self.write(bytes([REPORT_VERSION, *self.version]), "REPORT_VERSION")
        self.write(firmware_report(self.firmware_name, self.version), "REPORT_FIRMWARE")

    def on_disconnect(self) -> None:
        with self._state:                 # USB power gone: the pins float low
            now = time.monotonic()
            for pin in self.modes:
                if self._duty_of(pin):
                    self.history.append((now, pin, 0.0))
            self._reset()

    def _reset(self) -> None:
        self._buf.clear()
        self.modes.clear()
        self.values.clear()
        self.reporting = {"analog": {}, "digital": {}}
        self.sampling_interval_ms = 19

    # -- wire ---------------------------------------------------------------------------------
    def on_data(self, data: bytes) -> None:
        with self._state:
            self._buf += data
            while self._buf:
                msg = self._take()
                if msg is None:
                    break
                if not msg:
                    continue
                self.received.append(tuple(msg))
                self.stats["messages"] += 1
                self._execute(msg)

    def _take(self) -> bytes | None:
        """The next complete message from the buffer (data bytes before a command are
        dropped, as the sketch's parser does); None if incomplete."""
        buf = self._buf
        while buf and buf[0] < 0x80:
            del buf[0]
        if not buf:
            return None
        cmd = buf[0]
        if cmd == START_SYSEX:
            end = buf.find(bytes([END_SYSEX]))
            if end < 0:
                return None
            msg = bytes(buf[:end + 1])
        else:
            n = _CHANNEL_DATA.get(cmd & 0xF0) if cmd < 0xF0 else _SYSTEM_DATA.get(cmd)
            if n is None:
                self.stats["unknown"] += 1
                del buf[0]
                return b""
            if len(buf) < 1 + n:
                return None
            msg = bytes(buf[:1 + n])
        del buf[:len(msg)]
        return msg

    def _execute(self, msg: bytes) -> None:
        if not msg:
            return
        cmd = msg[0]
        if cmd == START_SYSEX:
            self._sysex(msg[1] if len(msg) > 2 else None, msg[2:-1])
        elif cmd == REPORT_VERSION:
            self.write(bytes([REPORT_VERSION, *self.version]), "REPORT_VERSION")
        elif cmd == SYSTEM_RESET:
            self.stats["resets"] += 1
            self._set_all_low()
            self._reset()
        elif cmd == SET_PIN_MODE:
            pin, mode = msg[1], msg[2]
            if pin < UNO_PINS and not (mode == PWM and pin not in UNO_PWM):
                self.modes[pin] = mode
                self._set(pin, 0)
        elif cmd == SET_DIGITAL_PIN_VALUE:
            self._set(msg[1], 1 if msg[2] else 0)
        elif cmd & 0xF0 == ANALOG_MESSAGE:
            self.stats["pwm_writes"] += 1
            self._set(cmd & 0x0F, msg[1] | (msg[2] << 7))
        elif cmd & 0xF0 == DIGITAL_MESSAGE:
            port, mask = cmd & 0x0F, msg[1] | (msg[2] << 7)
            for bit in range(8):
                pin = port * 8 + bit
                if self.modes.get(pin) == OUTPUT:
                    self._set(pin, (mask >> bit) & 1)
        elif cmd & 0xF0 == REPORT_ANALOG:
            self.reporting["analog"][cmd & 0x0F] = msg[1]
        elif cmd & 0xF0 == REPORT_DIGITAL:
            self.reporting["digital"][cmd & 0x0F] = msg[1]

    def _sysex(self, command: int | None, data: bytes) -> None:
        if command == REPORT_FIRMWARE:
            self.write(firmware_report(self.firmware_name, self.version), "REPORT_FIRMWARE")
        elif command == CAPABILITY_QUERY:
            self.write(capability_response(), "CAPABILITY_RESPONSE")
        elif command == ANALOG_MAPPING_QUERY:
            self.write(analog_mapping_response(), "ANALOG_MAPPING_RESPONSE")
        elif command == PIN_STATE_QUERY and data:
            pin = data[0]
            value = self.values.get(pin, 0)
            state = bytearray([value & 0x7F])
            value >>= 7
            while value:
                state.append(value & 0x7F)
                value >>= 7
            self.write(bytes([START_SYSEX, PIN_STATE_RESPONSE, pin, self.modes.get(pin, INPUT), *state,
                              END_SYSEX]), "PIN_STATE_RESPONSE")
        elif command == EXTENDED_ANALOG and len(data) >= 2:
            self.stats["pwm_writes"] += 1
            self._set(data[0], sum(b << (7 * i) for i, b in enumerate(data[1:])))
        elif command == SAMPLING_INTERVAL and len(data) >= 2:
            self.sampling_interval_ms = max(data[0] | (data[1] << 7), 1)
        else:
            self.stats["unknown"] += 1

    def _set(self, pin: int, value: int) -> None:
        before = self._duty_of(pin)
        self.values[pin] = int(value)
        after = self._duty_of(pin)
        if after != before:
            self.history.append((time.monotonic(), pin, after))

    def _set_all_low(self) -> None:
        for pin in list(self.modes):
            self._set(pin, 0)
