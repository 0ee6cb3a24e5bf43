"""The board-link options of the commands, at their boundary and without a board: --port and
--place (host.check, host.evaluate, [chip] place in a study), and host.flash's --probe/--drive/--port
checks before anything is built. The labgrid integration test is tests/link/test_labgrid.py."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from host import check, evaluate, flash
from host.core.errors import UserError
from host.core.paths import DEFAULT_MODEL, ROOT
from host.link.device import LINK_ENV
from host.link.labgrid import serial_url
from host.study.config import load_experiment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_check_uses_the_port_and_the_link_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """host.check used to boot QEMU whatever SLINGSHOT_LINK said: now --port, else the variable."""
    url = f"socket://127.0.0.1:{free_port()}"
    with pytest.raises(UserError, match="cannot open the link " + url):
        check.main(["--model", str(DEFAULT_MODEL), "--port", url, "--inputs", "random:1"])
    monkeypatch.setenv(LINK_ENV, url)
    with pytest.raises(UserError, match="cannot open the link " + url):
        check.main(["--model", str(DEFAULT_MODEL), "--inputs", "random:1"])


@pytest.mark.parametrize(("argv", "message"), [
    (["--place", "a", "--port", "socket://x:1"], "--place and --port both"),
    (["--port", "socket://x:1", "--cycles"], "--cycles counts in QEMU"),
    (["--place", "a", "--target", "native"], "--place needs --target chip"),
])
def test_check_link_options_are_checked(argv: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        check.main(["--model", str(DEFAULT_MODEL), *argv])


@pytest.mark.parametrize(("argv", "message"), [
    (["--place", "a", "--devices", "2"], "--devices 2 boots emulators; --place is one board"),
    (["--port", "socket://x:1", "--backend", "native"], "--port needs --backend device"),
    (["--place", "a", "--port", "socket://x:1"], "--place and --port both"),
])
def test_evaluate_link_options_are_checked(argv: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        evaluate.main(argv)


def test_place_without_labgrid_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "labgrid", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "labgrid.remote", None)
    with pytest.raises(UserError, match="--place needs labgrid") as err:
        check.main(["--model", str(DEFAULT_MODEL), "--place", "bench-1"])
    assert "slingshot[lab]" in (err.value.hint or "")


def test_serial_url_of_an_exported_port() -> None:
    assert serial_url({"host": "lab-pi", "port": 4000, "protocol": "rfc2217"}) == \
        "rfc2217://lab-pi:4000?ign_set_control"
    assert serial_url({"host": "lab-pi", "port": 4000}) == "rfc2217://lab-pi:4000?ign_set_control"
    assert serial_url({"host": "lab-pi", "port": 4000, "protocol": "raw"}) == "socket://lab-pi:4000"


STUDY = (ROOT / "configs" / "digits-quick.toml").read_text()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text.replace('"../models/', f'"{ROOT}/models/'))
    return path


def test_chip_place_in_a_study(tmp_path: Path) -> None:
    one = STUDY.replace('precisions = ["int8", "int16x8"]', 'precisions = ["int8"]\nplace = "bench-1"')
    assert load_experiment(write(tmp_path, one)).chip_place == "bench-1"
    assert load_experiment(ROOT / "configs" / "digits-quick.toml").chip_place is None
    two = STUDY.replace('precisions = ["int8", "int16x8"]', 'precisions = ["int8", "int16x8"]\nplace = "bench-1"')
    with pytest.raises(UserError, match="one board with one firmware"):
        load_experiment(write(tmp_path, two))
    empty = STUDY.replace('precisions = ["int8", "int16x8"]', 'precisions = ["int8"]\nplace = ""')
    with pytest.raises(UserError, match="chip.place must be a labgrid place name"):
        load_experiment(write(tmp_path, empty))


def test_study_place_option_needs_one_chip_firmware() -> None:
    with pytest.raises(UserError, match="--place bench-1 is one board with one firmware"):
        evaluate.main(["--config", str(ROOT / "configs" / "digits-quick.toml"), "--place", "bench-1"])


@pytest.mark.parametrize(("argv", "message"), [
    (["--drive", "/tmp"], "--drive is for the mass_storage flash method; board nucleo-f446re is programmed with pyocd"),
    (["--port", "/dev/ttyNOPE9"], "--port /dev/ttyNOPE9: no such serial port"),
    (["--port", "ftp://x"], "unknown link scheme 'ftp'"),
])
def test_flash_checks_real_board_options_before_building(argv: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        flash.main(["--board", "nucleo-f446re", *argv])


def test_flash_refuses_real_board_options_for_an_emulated_board() -> None:
    with pytest.raises(UserError, match="--probe: board mps2-an386 is emulated"):
        flash.main(["--probe", "0669"])


# ---- board detection (python -m host.flash --list) at its boundary: mbed-tools' and pyserial's answers faked


def test_detection_with_mbed_tools_matches_board_files() -> None:
    from types import SimpleNamespace

    from host.core.boards import load_board
    from host.link.probe import detect_boards

    boards = [load_board("nucleo-f446re"), load_board("nucleo-l4r5zi")]
    f446 = SimpleNamespace(mbed_board=SimpleNamespace(board_type="NUCLEO_F446RE", board_name="NUCLEO-F446RE"),
                           serial_number="0669FF123", serial_port="/dev/ttyACM0",
                           mount_points=(Path("/media/me/NODE_F446RE"),))
    other = SimpleNamespace(mbed_board=SimpleNamespace(board_type="", board_name=""), serial_number="99",
                            serial_port=None, mount_points=(Path("/media/me/DAPLINK"),))
    found = detect_boards(boards, devices=SimpleNamespace(identified_devices=[f446], unidentified_devices=[other]))
    assert [(d.boards, d.serial_port, d.via) for d in found] == [
        (("nucleo-f446re",), "/dev/ttyACM0", "mbed-tools"), ((), None, "mbed-tools")]
    assert found[1].description == "unidentified"


def test_detection_without_mbed_tools_uses_the_usb_ids() -> None:
    from types import SimpleNamespace

    from host.core.boards import load_board
    from host.link.probe import detect_boards

    boards = [load_board("nucleo-f446re")]
    ports = [SimpleNamespace(device="/dev/ttyS0", vid=None, pid=None),
             SimpleNamespace(device="/dev/ttyACM3", vid=0x0483, pid=0x374B, serial_number="066D", description="STM")]
    (found,) = detect_boards(boards, ports=ports)
    assert (found.serial_port, found.boards, found.via) == ("/dev/ttyACM3", ("nucleo-f446re",), "pyserial")


def test_flash_list_prints_the_detected_boards(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from host.link.probe import DetectedBoard

    detected = [DetectedBoard("NUCLEO_F446RE", "0669", "/dev/ttyACM0", (Path("/media/NODE_F446RE"),),
                              ("nucleo-f446re",), "mbed-tools")]
    monkeypatch.setattr(flash, "detect_boards", lambda boards: detected)
    assert flash.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "/dev/ttyACM0" in out and "board nucleo-f446re" in out and "(detected with mbed-tools)" in out


def test_evaluate_uses_the_port_and_the_link_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A flag run used to boot QEMU whatever --port or SLINGSHOT_LINK said: now its chip is the link, opened
    before the run directory is made."""
    url = f"socket://127.0.0.1:{free_port()}"
    argv = ["--num", "2", "--attacks", "fgsm", "--eps", "0.1", "--workers", "0", "--no-progress", "--out",
            str(tmp_path)]
    with pytest.raises(UserError, match="cannot open the link " + url):
        evaluate.main([*argv, "--port", url, "--run-id", "port"])
    monkeypatch.setenv(LINK_ENV, url)
    with pytest.raises(UserError, match="cannot open the link " + url):
        evaluate.main([*argv, "--run-id", "env"])
    assert list(tmp_path.iterdir()) == []   # found before any run directory exists


@pytest.mark.parametrize(("argv", "message"), [
    (["--port", "socket://x:1", "--cycles"], "--cycles counts in QEMU booted here, not on a board behind --port"),
    (["--config", str(ROOT / "configs" / "digits-quick.toml"), "--port", "socket://x:1", "--cycles"],
     "--cycles counts in QEMU booted here"),
    (["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "--scheduler and --workers both say where to run"),
])
def test_evaluate_refuses_what_a_link_or_a_cluster_cannot_do(argv: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        evaluate.main(argv)


def test_workers_on_the_command_line_win_over_the_config_scheduler(tmp_path: Path) -> None:
    from argparse import Namespace

    config = write(tmp_path, STUDY + '\n[cluster]\nscheduler = "tcp://127.0.0.1:1"\n')
    experiment = load_experiment(config)
    assert evaluate.where_to_run(experiment, Namespace(scheduler=None, workers=0), flags=False) == (None, 0)
    assert evaluate.where_to_run(experiment, Namespace(scheduler=None, workers=None), flags=False) == \
        ("tcp://127.0.0.1:1", None)


def test_evaluate_refuses_a_board_flashed_in_mlperf_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flag run booted whatever was flashed: an MLPerf Tiny mode build, which speaks the EEMBC text protocol,
    then failed its handshake in a worker."""
    import dataclasses

    from host.core.paths import DEFAULT_BOARD
    from host.link.images import FlashedImage

    image = FlashedImage(board=DEFAULT_BOARD, model_path=str(DEFAULT_MODEL),
                         model_sha256=bytes(32), elf=Path("firmware.elf"), flash_bytes=0, ram_bytes=0, mode="mlperf",
                         port=None)
    monkeypatch.setattr(evaluate, "read_flashed", lambda board: dataclasses.replace(image, board=board))
    monkeypatch.delenv(LINK_ENV, raising=False)
    with pytest.raises(UserError, match=f"the firmware flashed on {DEFAULT_BOARD} is the MLPerf Tiny mode build"):
        evaluate.main(["--num", "2", "--attacks", "fgsm", "--eps", "0.1", "--workers", "0"])
