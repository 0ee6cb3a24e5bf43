"""Real boards (NUCLEO-F446RE, NUCLEO-L4R5ZI): board files, builds, and the flashing/port boundary.

No board or probe is attached here and pyOCD is not installed, so flashing and the serial port are
tested at the boundary: a fake pyOCD back end (host.link.probe.PyOcdBackend), a temporary directory posing
as the probe's mass-storage drive (with MBED.HTM), fake serial.tools.list_ports results, and a real
pseudo-terminal for the port. What the hardware would do after that (programming the flash, the
firmware answering on the ST-LINK virtual COM port) is not tested.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from host.compiler import compile_tflite
from host.core.boards import load_board, load_board_file
from host.core.errors import UserError
from host.core.paths import DEFAULT_MODEL, ROOT, SHARED_DIR
from host.engine.build import build_firmware, check_fits, estimate_needs, export_image
from host.link import probe

REAL = ["nucleo-f446re", "nucleo-l4r5zi"]
ST_LINK = (0x0483, 0x374B)
needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs gcc-arm-none-eabi")


class FakePyOcd:
    def __init__(self, probes: list[probe.ProbeInfo], installed: bool = True) -> None:
        self.probes, self.installed = probes, installed
        self.calls: list[tuple] = []

    def list_probes(self) -> list[probe.ProbeInfo]:
        return self.probes

    def target_available(self, target: str) -> bool:
        return self.installed

    def install_target(self, target: str) -> None:
        self.calls.append(("install", target))
        self.installed = True

    def program(self, unique_id: str, target: str, image: Path) -> None:
        self.calls.append(("program", unique_id, target, image))


def port(device: str, vid: int | None, pid: int | None, serial_number: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(device=device, vid=vid, pid=pid, serial_number=serial_number, description=device)


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def assert_clean_failure(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


# ---- board files -----------------------------------------------------------------------------------


def test_board_files() -> None:
    f446, l4 = (load_board(n) for n in REAL)
    assert not f446.emulated and f446.instructions_per_tick is None and f446.instructions(1000) is None
    assert f446.flash.length == 512 * 1024 and f446.ram.length == 128 * 1024 and f446.clock_hz == 16_000_000
    assert f446.uart_base == 0x40004400 and f446.method == "pyocd" and f446.probe_target == "stm32f446retx"
    assert l4.flash.length == 2 * 1024 * 1024 and l4.ram.length == 640 * 1024 and l4.uart_driver == "stm32l4"
    assert l4.uart_base == 0x40008000 and l4.extra_defines["UART_LPUART"] == 1 and l4.probe_target == "stm32l4r5zitx"
    assert all(ST_LINK in b.usb_ids for b in (f446, l4))


GOOD = (ROOT / "boards" / "nucleo-f446re" / "board.toml").read_text()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace('method = "pyocd"', 'method = "jtag"'), "'flash.method' must be one of"),
    (lambda t: t.replace('target = "stm32f446retx"', ""), "'flash.target' is missing"),
    (lambda t: t.replace('method = "pyocd"', 'method = "emulator"'), "'flash.method' a real board"),
    (lambda t: t.replace('"0483:374B"', '"0483-374B"'), "'uart.usb' entries are USB ids"),
    (lambda t: t.replace('format = "bin"', 'format = "elf"'), "'flash.format' must be one of"),
    (lambda t: t + '\n[emulator]\nkind = "gem5"\n', "'emulator.kind' must be one of"),
])
def test_invalid_real_board_fields(tmp_path: Path, edit, message: str) -> None:  # noqa: ANN001
    path = tmp_path / "nucleo-f446re" / "board.toml"
    path.parent.mkdir()
    path.write_text(edit(GOOD))
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_board_file(path)


def test_fit_check_on_real_boards() -> None:
    model = compile_tflite(DEFAULT_MODEL)
    for name in REAL:
        check_fits(model, load_board(name))
        check_fits(model, load_board(name), mlperf=True)
    # A model needing more RAM than the F446RE's 128 KiB but less than the L4R5ZI's 640 KiB:
    big = dataclasses.replace(model, arena_bytes=200_000)
    with pytest.raises(UserError) as err:
        check_fits(big, load_board("nucleo-f446re"))
    assert "memory.ram (0x20000000, 131,072 bytes)" in str(err.value) and "nucleo-l4r5zi" in str(err.value)
    check_fits(big, load_board("nucleo-l4r5zi"))
    assert {n.region.name for n in estimate_needs(big, load_board("nucleo-l4r5zi"))} == {"flash", "ram"}


@pytest.mark.skipif(not (SHARED_DIR / "models" / "david-goliath" / "coffee_cnn_int8.tflite").exists(),
                    reason="needs the shared models")
def test_coffee_cnn_fits_the_mlperf_reference_board_only() -> None:
    coffee = compile_tflite(SHARED_DIR / "models" / "david-goliath" / "coffee_cnn_int8.tflite")
    check_fits(coffee, load_board("nucleo-l4r5zi"))
    with pytest.raises(UserError, match="does not fit board nucleo-f446re"):
        check_fits(coffee, load_board("nucleo-f446re"))


@needs_gcc
@pytest.mark.parametrize("name", REAL)
def test_firmware_builds_and_exports(name: str, tmp_path: Path) -> None:
    board = load_board(name)
    image = build_firmware(compile_tflite(DEFAULT_MODEL), board, out_dir=tmp_path)
    binary, hexfile = export_image(image, "bin"), export_image(image, "hex")
    assert binary.stat().st_size == image.flash_bytes  # the load image from 0x08000000, no gaps
    vectors = binary.read_bytes()[:8]
    stack_top, reset = int.from_bytes(vectors[:4], "little"), int.from_bytes(vectors[4:], "little")
    assert stack_top == board.ram.origin + board.ram.length and board.flash.contains(reset & ~1) and reset & 1
    assert hexfile.read_text().startswith(":020000040800")  # extended linear address 0x0800


# ---- pyOCD ------------------------------------------------------------------------------------------


def test_pyocd_programs_the_elf_through_the_one_probe(tmp_path: Path) -> None:
    fake = FakePyOcd([probe.ProbeInfo("066DFF123", "NUCLEO-F446RE")], installed=False)
    elf = tmp_path / "firmware.elf"
    used = probe.flash_pyocd(load_board("nucleo-f446re"), elf, backend=fake)
    assert used.unique_id == "066DFF123"
    assert fake.calls == [("install", "stm32f446retx"), ("program", "066DFF123", "stm32f446retx", elf)]


def test_pyocd_probe_choice() -> None:
    board = load_board("nucleo-l4r5zi")
    two = [probe.ProbeInfo("066DAAA1", "NUCLEO-L4R5ZI"), probe.ProbeInfo("0670BBB2", "NUCLEO-F446RE")]
    with pytest.raises(UserError, match="no debug probe found"):
        probe.flash_pyocd(board, Path("x.elf"), backend=FakePyOcd([]))
    with pytest.raises(UserError, match="2 debug probes are connected") as err:
        probe.flash_pyocd(board, Path("x.elf"), backend=FakePyOcd(two))
    assert "066DAAA1 (NUCLEO-L4R5ZI)" in str(err.value)
    fake = FakePyOcd(two)
    assert probe.flash_pyocd(board, Path("x.elf"), probe_id="0670", backend=fake).unique_id == "0670BBB2"
    with pytest.raises(UserError, match="no single debug probe matches '06'"):
        probe.flash_pyocd(board, Path("x.elf"), probe_id="06", backend=FakePyOcd(two))


@needs_gcc
def test_make_flash_without_pyocd_is_a_clean_error() -> None:
    try:
        import pyocd  # noqa: F401
        pytest.skip("pyOCD is installed here")
    except ImportError:
        pass
    proc = run("host.flash", "--board", "nucleo-f446re")
    assert_clean_failure(proc, "error: pyOCD is not installed", "pip install pyocd")
    assert "RAM" not in proc.stdout  # the build ran, the probe step stopped it before anything was recorded


# ---- mass storage -----------------------------------------------------------------------------------


def drive(root: Path, label: str) -> Path:
    path = root / label
    path.mkdir(parents=True)
    (path / "MBED.HTM").write_text("<html>ST-LINK</html>")
    return path


def test_mass_storage_copy(tmp_path: Path) -> None:
    board = load_board("nucleo-f446re")
    node = drive(tmp_path / "media", "NODE_F446RE")
    drive(tmp_path / "media", "DAPLINK")
    (tmp_path / "media" / "USBSTICK").mkdir()
    image = tmp_path / "firmware.bin"
    image.write_bytes(b"\x00\x00\x02\x20" * 16)
    candidates = sorted((tmp_path / "media").iterdir())
    copied = probe.flash_mass_storage(board, image, candidates=candidates)
    assert copied == node / "firmware.bin" and copied.read_bytes() == image.read_bytes()
    # explicit drive, and the probe's FAIL.TXT
    other = drive(tmp_path / "elsewhere", "ANY")
    (other / "FAIL.TXT").write_text("The application file format is unknown")
    with pytest.raises(UserError, match="the probe refused the image: The application file format"):
        probe.flash_mass_storage(board, image, drive=other)


def test_mass_storage_drive_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    board = load_board("nucleo-l4r5zi")
    with pytest.raises(UserError, match=r"USB drive \(NODE_L4R5ZI or NOD_L4R5ZI\) was not found") as err:
        probe.find_drive(board, candidates=[drive(tmp_path, "NODE_F446RE")])
    assert "drives found" in str(err.value) and "--drive" in str(err.value)
    both = [drive(tmp_path / "a", "NODE_L4R5ZI"), drive(tmp_path / "b", "NODE_L4R5ZI")]
    with pytest.raises(UserError, match="several drives"):
        probe.find_drive(board, candidates=both)
    with pytest.raises(UserError, match="is not a mounted folder"):
        probe.find_drive(board, drive=tmp_path / "missing")
    monkeypatch.setenv(probe.DRIVE_ENV, str(both[0]))
    assert probe.find_drive(board) == both[0]


def test_flash_cli_mass_storage_records_the_port(tmp_path: Path) -> None:
    """host.flash end to end with a mass-storage board: a copy of the F446RE file with method
    mass_storage, a temporary drive and an explicit --port; the manifest records both."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs gcc-arm-none-eabi")
    node = drive(tmp_path, "NODE_F446RE")
    from host.link import flashing as flash_module

    board = dataclasses.replace(load_board("nucleo-f446re"),
                                flash_method={"method": "mass_storage", "drive_labels": ["NODE_F446RE"]})
    model = compile_tflite(DEFAULT_MODEL)
    image = build_firmware(model, board, out_dir=tmp_path / "fw")
    done = flash_module.program(image, board, probe=None, port="/dev/ttyFAKE0", drive=node)
    assert done == {"drive": str(node), "port": "/dev/ttyFAKE0"}
    assert (node / "firmware.bin").read_bytes() == (tmp_path / "fw" / "firmware.bin").read_bytes()


def test_flash_cli_drive_not_found_is_a_clean_error(tmp_path: Path) -> None:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs gcc-arm-none-eabi")
    board_dir = ROOT / "boards" / "_test-mass-storage"
    try:
        board_dir.mkdir()
        (board_dir / "board.toml").write_text(GOOD.replace('name = "nucleo-f446re"', 'name = "_test-mass-storage"')
                                              .replace('method = "pyocd"', 'method = "mass_storage"'))
        proc = run("host.flash", "--board", "_test-mass-storage", "--drive", str(tmp_path / "nothing"))
        assert_clean_failure(proc, "is not a mounted folder")
        proc = run("host.flash", "--board", "_test-mass-storage", env={"HOME": str(tmp_path), "USER": "nobody-here"})
        if "was not found" not in proc.stderr:  # this machine has a matching drive mounted: nothing to check
            pytest.skip("a NODE_F446RE drive is mounted here")
        assert_clean_failure(proc, "USB drive (NODE_F446RE) was not found")
    finally:
        shutil.rmtree(board_dir, ignore_errors=True)


# ---- serial port -------------------------------------------------------------------------------------


def test_port_found_by_vid_pid() -> None:
    board = load_board("nucleo-f446re")
    ports = [port("/dev/ttyS0", None, None), port("/dev/ttyUSB0", 0x0403, 0x6001), port("/dev/ttyACM0", *ST_LINK)]
    assert probe.find_serial_port(board, ports=ports) == "/dev/ttyACM0"
    two = [port("/dev/ttyACM0", *ST_LINK, "066DAAA1"), port("/dev/ttyACM1", *ST_LINK, "0670BBB2")]
    assert probe.find_serial_port(board, probe_serial="0670BBB2", ports=two) == "/dev/ttyACM1"
    with pytest.raises(UserError, match="several serial ports match") as err:
        probe.find_serial_port(board, ports=two)
    assert "--port" in str(err.value)
    with pytest.raises(UserError, match=r"no serial port of board nucleo-f446re \(USB 0483:374B"):
        probe.find_serial_port(board, ports=ports[:2])


def test_device_opens_the_recorded_or_found_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_device on a real board: no QEMU; the port comes from the manifest, else from list_ports;
    a nonexistent or busy port is a clear error."""
    import serial

    from host.emulators import launch
    from host.link import device, images

    board = load_board("nucleo-f446re")
    monkeypatch.setattr(images, "FLASH_DIR", tmp_path)
    monkeypatch.delenv(device.LINK_ENV, raising=False)
    (tmp_path / board.name).mkdir()
    (tmp_path / board.name / "firmware.elf").write_bytes(b"")
    manifest = {"board": board.name, "model_path": "m.tflite", "model_sha256": "00" * 32, "port": None}
    (tmp_path / board.name / "manifest.json").write_text(json.dumps(manifest))
    opened: list[str] = []

    def fake_connect(spec, url, sha, timeout_s=30.0, window=1):  # noqa: ANN001, ANN202
        opened.append(url)
        raise UserError("stop here")

    monkeypatch.setattr(launch, "connect", fake_connect)
    import serial.tools.list_ports as list_ports

    monkeypatch.setattr(list_ports, "comports", lambda: [port("/dev/ttyACM7", *ST_LINK)])
    with pytest.raises(UserError, match="stop here"), launch.open_device(board.name):
        pass
    monkeypatch.setattr(list_ports, "comports", lambda: [])
    with pytest.raises(UserError, match="no serial port of board nucleo-f446re"), launch.open_device(board.name):
        pass
    manifest["port"] = "/dev/ttyACM3"
    (tmp_path / board.name / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="stop here"), launch.open_device(board.name):
        pass
    assert opened == ["/dev/ttyACM7", "/dev/ttyACM3"]
    manifest["mode"] = "mlperf"
    (tmp_path / board.name / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="MLPerf Tiny mode build"), launch.open_device(board.name):
        pass

    # the real open: a nonexistent port, then a busy one (a pty held exclusively by another open)
    with pytest.raises(UserError, match="cannot open the link /dev/ttyNOPE9") as err:
        device.open_link("/dev/ttyNOPE9", board.uart_baud)
    assert "plugged in" in str(err.value)
    leader, follower = pty.openpty()
    try:
        name = os.ttyname(follower)
        held = device.open_link(name, board.uart_baud)
        assert isinstance(held, serial.SerialBase) and held.baudrate == 115200
        with pytest.raises(UserError, match=f"cannot open the link {name}") as err:
            device.open_link(name, board.uart_baud)
        assert "another program holds the port" in str(err.value)
        held.close()
    finally:
        os.close(leader)
        os.close(follower)
