"""Boards on other machines through labgrid (host.link.labgrid, `--place`).

A real `labgrid-coordinator` and `labgrid-exporter` run on localhost. The exporter exports a
RawSerialPort — a pseudo-terminal that socat bridges to the emulated board's serial socket (QEMU,
the flashed digits firmware) — which labgrid serves through ser2net as RFC 2217 when the place is
acquired. `host.check` and `host.evaluate` run through the place, bit-exact with the reference,
and release it; a taken place, an absent one, a dead coordinator and a gone exporter are one
`error:` line each, quickly. A study with `[chip] place` runs its chip precision there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from host.core.paths import DEFAULT_BOARD, DEFAULT_MODEL, ROOT

pytest.importorskip("labgrid", reason="labgrid is not installed (pip install 'slingshot[lab]')")
for _tool in ("labgrid-coordinator", "labgrid-exporter", "labgrid-client", "socat", "qemu-system-arm"):
    if shutil.which(_tool) is None:
        pytest.skip(f"{_tool} is not installed", allow_module_level=True)
if shutil.which("ser2net") is None and not Path("/usr/sbin/ser2net").exists():
    pytest.skip("ser2net is not installed (apt-get install ser2net)", allow_module_level=True)

pytestmark = pytest.mark.qemu
PLACE = "slingshot-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


class Lab:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.address = f"127.0.0.1:{_free_port()}"
        self.processes: list[subprocess.Popen] = []
        self.exporter: subprocess.Popen | None = None

    def start(self, command: list[str]) -> subprocess.Popen:
        log = open(self.directory / f"{Path(command[0]).name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(command, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(proc)
        return proc

    def client(self, *words: str, env: dict[str, str] | None = None, check: bool = True) -> str:
        result = subprocess.run(["labgrid-client", "-x", self.address, *words], capture_output=True, text=True,
                                timeout=30, env={**os.environ, **(env or {})})
        if check and result.returncode != 0:
            raise AssertionError(f"labgrid-client {' '.join(words)}: {result.stdout}{result.stderr}")
        return result.stdout + result.stderr

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_command(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from host.core.boards import load_board
    from host.emulators.qemu import QemuProcess
    from host.link.images import read_flashed

    subprocess.run([sys.executable, "-m", "host.flash"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    directory = tmp_path_factory.mktemp("lab")
    lab = Lab(directory)
    try:
        lab.start(["labgrid-coordinator", "-l", lab.address])
        _wait_listening(int(lab.address.rsplit(":", 1)[1]))
        with QemuProcess(load_board(DEFAULT_BOARD), read_flashed(DEFAULT_BOARD).elf) as qemu:
            link = directory / "tty-board"
            lab.start(["socat", f"pty,link={link},raw,echo=0", f"tcp:127.0.0.1:{qemu.launch()},retry=200,interval=0.1"])
            deadline = time.monotonic() + 20
            while not link.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            tty = os.path.realpath(link)            # labgrid exports device paths under /dev only
            # Keep the terminal's slave side open: socat must not see a hang-up when ser2net closes it
            # between two acquisitions.
            holder = os.open(tty, os.O_RDWR | os.O_NOCTTY)
            (directory / "exporter.yaml").write_text(
                f"board:\n  RawSerialPort:\n    port: {tty}\n    speed: 115200\n")
            lab.exporter = lab.start(["labgrid-exporter", "-c", lab.address, "-n", "slingshot-exporter",
                                      "--hostname", "127.0.0.1", str(directory / "exporter.yaml")])
            lab.client("-p", PLACE, "create")
            lab.client("-p", PLACE, "add-match", "slingshot-exporter/board/NetworkSerialPort")
            deadline = time.monotonic() + 20
            while "slingshot-exporter/board" not in lab.client("resources") and time.monotonic() < deadline:
                time.sleep(0.2)
            try:
                yield lab
            finally:
                os.close(holder)
    finally:
        lab.stop()


def assert_released(lab: Lab) -> None:
    assert "acquired: None" in lab.client("-p", PLACE, "show")


def test_check_through_a_place_is_bit_exact_and_releases_it(lab: Lab) -> None:
    result = run_command("host.check", "--model", str(DEFAULT_MODEL), "--place", PLACE, "--inputs", "random:5",
                         "--profile", env={"LG_COORDINATOR": lab.address})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bit-exact 5/5" in result.stdout
    assert "over rfc2217://127.0.0.1:" in result.stdout and "ign_set_control" in result.stdout
    assert "profile  per op" in result.stdout
    assert_released(lab)


@pytest.mark.slow   # 20 s; flags and configs run one pipeline: test_a_study_with_a_chip_place covers it
def test_evaluate_through_a_place_is_bit_exact(lab: Lab, tmp_path: Path) -> None:
    result = run_command("host.evaluate", "--place", PLACE, "--num", "5", "--attacks", "fgsm", "--eps", "0.1",
                         "--out", str(tmp_path), "--run-id", "lab", "--no-progress",
                         env={"LG_COORDINATOR": lab.address})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "chip vs reference: bit-exact (10/10 identical)" in result.stdout
    assert (tmp_path / "lab" / "metrics.json").is_file()
    assert_released(lab)


def test_a_study_with_a_chip_place(lab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "study.toml"
    config.write_text(f"""
[experiment]
name = "lab-study"
[model]
float = "{ROOT}/models/digits_cnn.keras"
int8 = "{DEFAULT_MODEL}"
precisions = ["float32", "int8"]
[dataset]
path = "builtin:digits-test"
num = 6
[chip]
board = "{DEFAULT_BOARD}"
precisions = ["int8"]
place = "{PLACE}"
[[attack]]
name = "fgsm"
eps = [0.1]
""")
    result = run_command("host.evaluate", "--config", str(config), "--out", str(tmp_path), "--run-id", "study",
                         "--no-progress", env={"LG_COORDINATOR": lab.address})
    assert result.returncode == 0, result.stdout + result.stderr   # 1 if the chip differed from the reference
    assert "place    labgrid place" in result.stderr
    assert "chip vs reference: bit-exact (12/12 identical)" in result.stdout
    assert_released(lab)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return result.stderr


def test_a_taken_place_is_a_clear_error(lab: Lab) -> None:
    other = {"LG_USERNAME": "somebody-else"}
    lab.client("-p", PLACE, "acquire", env=other)
    try:
        started = time.monotonic()
        stderr = _one_error_line(run_command("host.check", "--model", str(DEFAULT_MODEL), "--place", PLACE,
                                             env={"LG_COORDINATOR": lab.address}, timeout=60))
        assert "is taken: acquired by" in stderr and "somebody-else" in stderr
        assert time.monotonic() - started < 30
    finally:
        lab.client("-p", PLACE, "release", env=other)


def test_an_absent_place_is_a_clear_error(lab: Lab) -> None:
    stderr = _one_error_line(run_command("host.evaluate", "--place", "no-such-place", "--num", "1",
                                         env={"LG_COORDINATOR": lab.address}, timeout=60))
    assert "there is no labgrid place 'no-such-place'" in stderr and PLACE in stderr
    assert "labgrid-client" in stderr   # what to do


def test_a_coordinator_that_does_not_answer_is_a_clear_error() -> None:
    started = time.monotonic()
    stderr = _one_error_line(run_command("host.check", "--model", str(DEFAULT_MODEL), "--place", PLACE,
                                         env={"LG_COORDINATOR": f"127.0.0.1:{_free_port()}"}, timeout=60))
    assert "does not answer" in stderr and "LG_COORDINATOR" in stderr
    assert time.monotonic() - started < 30


def test_a_silent_coordinator_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port that accepts connections but never speaks gRPC: the timeout, not a hang."""
    from host.core.errors import UserError
    from host.link.labgrid import acquired_place

    with socket.create_server(("127.0.0.1", 0)) as server:
        started = time.monotonic()
        with pytest.raises(UserError, match="does not answer"), \
                acquired_place(PLACE, f"127.0.0.1:{server.getsockname()[1]}", timeout_s=2):
            pass
        assert time.monotonic() - started < 15


def test_place_and_port_together_are_refused() -> None:
    stderr = _one_error_line(run_command("host.check", "--model", str(DEFAULT_MODEL), "--place", PLACE, "--port",
                                         "socket://127.0.0.1:1", timeout=60))
    assert "--place and --port" in stderr


def test_ctrl_c_releases_the_place(lab: Lab) -> None:
    import signal

    # Ctrl-C as in a terminal: a background job inherits SIGINT ignored, and Python keeps that.
    code = ("import signal, sys, runpy\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
            f"sys.argv = ['host.check', '--model', {str(DEFAULT_MODEL)!r}, '--place', {PLACE!r}, "
            "'--inputs', 'random:100000']\nrunpy.run_module('host.check', run_name='__main__')\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "LG_COORDINATOR": lab.address, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while "acquired: None" in lab.client("-p", PLACE, "show") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)    # inferring by now
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode != 0 and "Traceback" not in stderr, stderr
    finally:
        proc.kill()
        proc.wait()
    assert_released(lab)


def test_flashing_through_a_place_needs_its_probe_drive(lab: Lab) -> None:
    """The test place exports a serial port only: host.flash --place refuses it before building, and releases it."""
    started = time.monotonic()
    stderr = _one_error_line(run_command("host.flash", "--board", "nucleo-l4r5zi", "--place", PLACE,
                                         env={"LG_COORDINATOR": lab.address}, timeout=120))
    assert "has no probe drive to flash through" in stderr and "NetworkSerialPort" in stderr
    assert "add-match EXPORTER/GROUP/NetworkUSBMassStorage" in stderr   # what to do
    assert time.monotonic() - started < 30
    assert_released(lab)


def test_flash_place_options_are_checked_first() -> None:
    """Before any coordinator is asked: an emulated board, or --port / --probe / --drive beside --place."""
    stderr = _one_error_line(run_command("host.flash", "--place", PLACE, timeout=60))
    assert "is emulated; a labgrid place holds a real board" in stderr
    stderr = _one_error_line(run_command("host.flash", "--board", "nucleo-l4r5zi", "--place", PLACE, "--port",
                                         "/dev/null", timeout=60))
    assert "--place and --port" in stderr


LAB_PLACE, LAB_BOARD = os.environ.get("SLINGSHOT_TEST_PLACE"), os.environ.get("SLINGSHOT_TEST_BOARD")


@pytest.mark.skipif(not (LAB_PLACE and LAB_BOARD and os.environ.get("LG_COORDINATOR")),
                    reason="needs a lab: a labgrid place with a real board, its serial port and its probe's drive "
                    "(USBMassStorage: labgrid matches a real USB block device, which no emulator provides): "
                    "SLINGSHOT_TEST_PLACE=NAME SLINGSHOT_TEST_BOARD=BOARD LG_COORDINATOR=HOST:PORT")
def test_a_real_board_flashed_through_its_place_is_bit_exact() -> None:
    result = run_command("host.flash", "--board", str(LAB_BOARD), "--place", str(LAB_PLACE), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"to the probe drive of labgrid place {LAB_PLACE}" in result.stdout
    time.sleep(5)   # the probe programs the target and resets it
    result = run_command("host.check", "--model", str(DEFAULT_MODEL), "--board", str(LAB_BOARD), "--place",
                         str(LAB_PLACE), "--inputs", "random:5", timeout=600)
    assert result.returncode == 0 and "bit-exact 5/5" in result.stdout, result.stdout + result.stderr


def test_a_place_whose_exporter_is_gone_is_a_clear_error(lab: Lab) -> None:  # last: stops the exporter
    assert lab.exporter is not None
    lab.exporter.terminate()
    lab.exporter.wait(timeout=10)
    deadline = time.monotonic() + 20
    while "slingshot-exporter/board" in lab.client("resources") and time.monotonic() < deadline:
        time.sleep(0.2)
    stderr = _one_error_line(run_command("host.check", "--model", str(DEFAULT_MODEL), "--place", PLACE,
                                         env={"LG_COORDINATOR": lab.address}, timeout=60))
    assert "exporter" in stderr and "not exported" in stderr
