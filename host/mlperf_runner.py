"""`python -m host.mlperf_runner`: run the MLPerf Tiny runner (mlcommons/tiny `benchmark/runner/`, unmodified)
against a board flashed with `make flash MLPERF=1` (docs/mlperf.md).

The runner finds its device under test only by USB VID:PID (its devices yaml) and has no port option. This
launcher starts it in a child Python process whose pyserial port listing reports one port, the board's, with
the VID:PID of the devices yaml's DUT entry; the runner's own code is not touched. The port is

* `--port PORT`: a real board's serial port (e.g. the NUCLEO-L4R5ZI's ST-LINK port, /dev/ttyACM0), or
* the emulated `--board` (default mps2-an386) as `make flash MLPERF=1` installed it (or `--elf`), booted in
  QEMU with its UART on a TCP port and bridged to a pty by socat.

Before the runner starts, the launcher checks that the port is free and answers `name%` / `profile%`, and that
the dataset folder of the board's model id is in the runner's format (y_labels.csv rows
`file,classes,class,bytes_to_send,stride`, file sizes equal to what the board takes, every class present in
accuracy mode). The runner writes its session (log.txt, results.txt, results.json) below `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import serial

from host.core.boards import load_board
from host.core.errors import UserError, run_cli
from host.core.paths import DEFAULT_BOARD, FLASH_DIR, RESULTS_DIR, SHARED_DIR
from host.emulators.qemu import QemuProcess, die_with_parent

RUNNER_ENV = "MLPERF_TINY_RUNNER"
DEFAULT_RUNNER = SHARED_DIR / "tools" / "mlperf-tiny-runner"
DEFAULT_DEVICE_LIST = "devices_kws_ic_vww.yaml"   # its DUT (l4r5zi, 0483:374B) at 115,200 baud in p and a modes
TEST_SCRIPTS = {"p": "tests_performance.yaml", "a": "tests_accuracy.yaml"}
MODE_NAMES = {"p": "performance", "a": "accuracy"}
# The runner's performance mode reports ERROR 2 instead of a throughput when its five timed windows
# take < 10 s of wall time.  Unpaced, QEMU runs the small models far faster than a board would, so the
# emulated board runs paced: one instruction per 2^5 = 32 ns of wall time, 31.25 M instructions per
# second.  Its m-lap-us stamps are then that virtual time.  At 2^3 (125 M per second) the kernels of
# 2026-12-07 ran ic01's, kws01's and vww01's loops in 8 s; at 2^4 (62.5 M) vww01's, pruned of its dead
# channels (host/compiler/prune.py, 5.0 M instructions an inference), in about 10 s.
PACED_SHIFT = 5
PACED_RATE = f"{1000 / 2 ** PACED_SHIFT:g} M instructions per second"
RUNNER_MODULES = {"yaml": "pyyaml", "sklearn": "scikit-learn", "matplotlib": "matplotlib", "usb": "pyusb",
                  "scipy": "scipy", "numpy": "numpy", "serial": "pyserial"}
INSTALL_HINT = "pip install -e '.[mlperf]' (the runner's Python packages), or make deps"
TRUTH_FIELDS = ["file", "classes", "class", "bytes_to_send", "stride"]   # the runner's datasets.DataSet

# Runs in the child process (cwd: the session folder's parent). Argument: a JSON object with runner, argv,
# port, vid, pid, error_file. Patches pyserial's port listing (and pyusb's device listing when there is no USB
# backend), then runs the runner's main.py as __main__. Any exception is written to error_file, not printed.
BOOTSTRAP = r"""
import json, os, runpy, sys, threading, logging
cfg = json.loads(sys.argv[1])
def fail(text):
    with open(cfg["error_file"], "a") as f:
        f.write(text + "\n")
def thread_hook(args):
    fail(f"{args.exc_type.__name__}: {args.exc_value} (in the runner's thread {args.thread.name})")
threading.excepthook = thread_hook
code = 0
try:
    import serial.tools.list_ports as list_ports
    from serial.tools.list_ports_common import ListPortInfo
    port = ListPortInfo(cfg["port"], skip_link_detection=True)
    port.vid, port.pid = cfg["vid"], cfg["pid"]
    port.description, port.hwid = "slingshot DUT", f"USB VID:PID={cfg['vid']:04X}:{cfg['pid']:04X}"
    list_ports.comports = lambda include_links=False: [port]
    import usb.core
    try:
        list(usb.core.find(find_all=True))
    except usb.core.NoBackendError:
        usb.core.find = lambda *a, **k: iter(())
    sys.path.insert(0, cfg["runner"])
    sys.argv = cfg["argv"]
    runpy.run_path(os.path.join(cfg["runner"], "main.py"), run_name="__main__")
except BaseException as exc:
    fail(f"{type(exc).__name__}: {exc}")
    code = 3
logging.shutdown()
sys.__stdout__.flush()
os._exit(code)
"""


@dataclass
class RunnerSession:
    """One runner session: its folder (log.txt, results.txt, results.json) and what it recorded."""

    model: str
    mode: str
    folder: Path
    windows: list[dict] = field(default_factory=list)   # results.json: one dict per `infer`
    summary: list[str] = field(default_factory=list)   # results.txt lines

    @property
    def scores(self) -> list[list[float]]:
        return [w["infer"]["results"] for w in self.windows if "infer" in w]


# ---- the devices yaml, the dataset ------------------------------------------------------------------------


def dut_entry(device_list: Path) -> dict:
    """The DUT the runner uses: the last `type: dut` entry (main.py), with its VID:PID."""
    import yaml

    try:
        entries = yaml.safe_load(device_list.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read the runner's device list {device_list}: {err}") from None
    duts = [e for e in entries or [] if isinstance(e, dict) and e.get("type") == "dut"]
    if not duts or not isinstance(duts[-1].get("usb"), dict) or not duts[-1]["usb"]:
        raise UserError(f"{device_list} has no `type: dut` entry with a `usb:` VID:PID",
                        hint=f"use the runner's {DEFAULT_DEVICE_LIST}")
    return duts[-1]


def dut_usb_id(dut: dict) -> tuple[int, int]:
    vid, pids = next(iter(dut["usb"].items()))
    return int(vid), int(pids[0] if isinstance(pids, list) else pids)


def dut_baud(dut: dict, mode: str) -> int:
    baud = dut.get("baud", 115200)
    if isinstance(baud, dict):
        baud = baud.get(MODE_NAMES[mode], 115200)
    return int(baud)


def script_loop_count(test_script: Path, model: str) -> int | None:
    """The `loop N` count of the model's script (performance mode: 5), None for a loop over every file."""
    import yaml

    try:
        scripts = yaml.safe_load(test_script.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read the runner's test script {test_script}: {err}") from None
    if not isinstance(scripts, dict) or model not in scripts:
        raise UserError(f"the runner's {test_script.name} has no script for the board's model id {model!r}",
                        hint="flash with MLPERF_MODEL=ic01, kws01, vww01 or ad01 (docs/mlperf.md)")
    for step in scripts[model].get("script", []):
        if isinstance(step, dict):
            key = next(iter(step))
            match = re.fullmatch(r"loop(?:\s+(\d+))?", str(key).strip())
            if match:
                return int(match.group(1)) if match.group(1) else None
    return None


def check_dataset(root: Path, model: str, mode: str, input_bytes: int | None, loop_count: int | None) -> int:
    """Check DATASET/<model>/y_labels.csv and its files the way the runner reads them; returns the file count."""
    folder = root / model
    truth = folder / "y_labels.csv"
    where = f"dataset {folder}"
    layout = ("one row per input file, no header: file,classes,class,bytes_to_send,stride "
              "(docs/mlperf.md, \"Datasets\")")
    if not truth.is_file():
        raise UserError(f"{where}: no y_labels.csv", hint=f"--dataset DIR holds {model}/y_labels.csv: {layout}")
    with truth.open(newline="") as f:
        rows = list(csv.DictReader(f, fieldnames=TRUTH_FIELDS))
    if not rows:
        raise UserError(f"{where}: y_labels.csv is empty", hint=layout)
    labels, classes_seen = set(), set()
    for number, row in enumerate(rows, 1):
        bad = f"{where}: y_labels.csv line {number}"
        if row.get(None) or any(row.get(k) is None for k in TRUTH_FIELDS[:3]):
            raise UserError(f"{bad}: {len([v for v in row.values() if v])} fields, not 5", hint=layout)
        try:
            classes, label = int(row["classes"]), int(row["class"])
            size, stride = (int(row[k]) if row.get(k) not in (None, "") else None
                            for k in ("bytes_to_send", "stride"))
        except ValueError:
            raise UserError(f"{bad}: classes, class, bytes_to_send and stride must be integers: "
                            f"{','.join(v for v in row.values() if isinstance(v, str))}", hint=layout) from None
        if classes < 1 or not 0 <= label < classes:
            raise UserError(f"{bad}: class {label} is not in 0..{classes - 1}", hint=layout)
        path = folder / row["file"].strip()
        if row["file"].strip() != row["file"] or not path.is_file():
            raise UserError(f"{bad}: no file {row['file']!r} in {folder} (no spaces around the name)", hint=layout)
        file_bytes = path.stat().st_size
        if model == "ad01":
            if size is None or stride is None or size <= 0 or stride <= 0 or size > file_bytes:
                raise UserError(f"{bad}: ad01 needs bytes_to_send (one input: {input_bytes or '?'} bytes) and a "
                                f"stride > 0, and a file at least bytes_to_send long ({file_bytes} bytes)",
                                hint=layout)
            sent = size
        else:
            sent = file_bytes
        if input_bytes is not None and sent != input_bytes:
            what = "bytes_to_send is" if model == "ad01" else f"{row['file']} has"
            raise UserError(f"{bad}: {what} {sent} bytes; the board's {model} model takes {input_bytes}",
                            hint="the runner sends each file as it is: regenerate the dataset for this model")
        labels.add(label)
        classes_seen.add(classes)
    if loop_count is not None and len(rows) < loop_count:
        raise UserError(f"{where}: {len(rows)} files; the runner's {MODE_NAMES[mode]} script loops "
                        f"{loop_count} times over consecutive files", hint=f"give at least {loop_count} files")
    if mode == "a":
        n = 2 if model == "ad01" else max(classes_seen)
        missing = sorted(set(range(n)) - labels)
        if missing:
            raise UserError(f"{where}: no input of class {', '.join(map(str, missing))}; the runner's accuracy "
                            f"mode computes an AUC over all {n} classes", hint="give every class at least one file")
    return len(rows)


# ---- the port ---------------------------------------------------------------------------------------------


def other_holders(port: str) -> list[str]:
    """Other processes that have the port's device open (a pty's socat bridge excepted)."""
    target = os.path.realpath(port)
    holders = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                continue
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if name != "socat":
            holders.append(f"{name} (pid {pid})")
    return holders


def read_until_ready(link: serial.SerialBase, timeout_s: float, after: str = "") -> list[str]:
    """Lines up to the `m-ready` that follows a line starting with `after`."""
    deadline, buffer, lines, seen = time.monotonic() + timeout_s, b"", [], not after
    while time.monotonic() < deadline:
        chunk = link.read(max(1, link.in_waiting))
        buffer += chunk
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            line = raw.decode("ascii", errors="replace").strip("\r\0 ")
            lines.append(line)
            seen = seen or line.startswith(after)
            if seen and line == "m-ready":
                return lines
    raise TimeoutError(lines)


@dataclass
class Identity:
    name: str
    model: str
    input_bytes: int | None   # what `infer` says the model takes (slingshot), None if unknown


def identify(port: str, baud: int, timeout_s: float = 5.0) -> Identity:
    """Check the port is free, then ask the board name%, profile% (and, from slingshot, its input size)."""
    holders = other_holders(port) if os.path.exists(port) else []
    if holders:
        raise UserError(f"serial port {port} is busy: open in {', '.join(holders)}",
                        hint="close the other program (a terminal, another runner) and run again")
    try:
        link = serial.Serial(port, baud, timeout=0.05, exclusive=True)
    except serial.SerialException as err:
        if err.errno in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in str(err) or "busy" in str(err):
            raise UserError(f"serial port {port} is busy: {err.strerror or err}",
                            hint="close the program that holds it (a terminal, another runner) and run again") \
                from None
        raise UserError(f"cannot open serial port {port}: {err.strerror or err}",
                        hint="the board's port (make flash prints it), e.g. /dev/ttyACM0; check permissions "
                             "(group dialout)") from None
    hint = (f"flash the MLPerf build (make flash MLPERF=1 MLPERF_MODEL=ic01 ...) and check the baud rate "
            f"({baud}, from the devices yaml; the slingshot boards run at 115200)")
    with link:
        try:
            link.write(b"name%")
            lines = read_until_ready(link, timeout_s, after="m-name-")
            link.write(b"profile%")
            lines += read_until_ready(link, timeout_s, after="m-model-")
        except TimeoutError as err:
            raise UserError(f"no MLPerf Tiny answer to name%/profile% on {port} within {timeout_s:.0f} s "
                            f"(got {err.args[0][-3:]})", hint=hint) from None
        name = next((m.group(1) for m in map(re.compile(r"m-name-dut-\[(.*)\]").fullmatch, lines) if m), "")
        model = next((m.group(1) for m in map(re.compile(r"m-model-\[(.*)\]").fullmatch, lines) if m), "")
        input_bytes = None
        if name == "slingshot":
            # db load 1 then infer with 0 bytes in: slingshot answers with the model's input size, runs nothing
            link.write(b"db load 1%")
            read_until_ready(link, timeout_s, after="m-[Expecting")
            link.write(b"infer 1 0%")
            answer = read_until_ready(link, timeout_s, after="e-[")
            sizes = [re.search(r"takes (\d+) input bytes", line) for line in answer]
            input_bytes = next((int(m.group(1)) for m in sizes if m), None)
    if not model:
        raise UserError(f"the board on {port} did not report its model id (m-model-[…])", hint=hint)
    return Identity(name, model, input_bytes)


def is_paced(mode: str, paced: bool | None) -> bool:
    """Whether the emulated board runs paced: as asked, else (None) in performance mode only."""
    return mode == "p" if paced is None else paced


@contextlib.contextmanager
def emulated_port(board_name: str, elf: Path | None, workdir: Path, paced: bool = False) -> Iterator[str]:
    """Boot the MLPerf build of an emulated board in QEMU and bridge its UART to a pty; yields the pty.
    `paced`: in wall-clock time at PACED_SHIFT (see there), for the runner's performance mode."""
    board = load_board(board_name)
    if board.emulator_kind != "qemu":
        raise UserError(f"board {board.name} is not emulated by QEMU",
                        hint="give a real board's serial port with --port, or an emulated --board (mps2-an386)")
    if elf is None:
        target = FLASH_DIR / board.name
        manifest_path = target / "manifest.json"
        if not manifest_path.is_file():
            raise UserError(f"board {board.name} is not flashed", hint=f"make flash BOARD={board.name} MLPERF=1 "
                            "MODEL=… MLPERF_MODEL=ic01 (docs/mlperf.md)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("mode") != "mlperf":
            raise UserError(f"board {board.name} holds the {manifest.get('mode', 'protocol')} build, not the "
                            "MLPerf Tiny mode", hint=f"make flash BOARD={board.name} MLPERF=1 MODEL=… MLPERF_MODEL=…")
        elf = target / "firmware.elf"
    if not elf.is_file():
        raise UserError(f"no firmware at {elf}", hint="make flash MLPERF=1, or --elf a build's firmware.elf")
    socat = shutil.which("socat")
    if socat is None:
        raise UserError("socat not found (it bridges the emulated UART to a pty)",
                        hint="sudo apt-get install socat, or make deps")
    pty = workdir / "dut"
    with QemuProcess(board, elf, paced_shift=PACED_SHIFT if paced else None) as qemu:
        tcp = qemu.launch()
        bridge = subprocess.Popen([socat, f"pty,link={pty},raw,echo=0",
                                   f"tcp:127.0.0.1:{tcp},nodelay,retry=100,interval=0.1"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  preexec_fn=die_with_parent)
        try:
            deadline = time.monotonic() + 20
            while not pty.exists() and bridge.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if not pty.exists():
                err = bridge.stderr.read().decode(errors="replace")[-300:] if bridge.poll() is not None else ""
                raise UserError(f"socat did not bridge QEMU's UART to a pty: {err or 'timed out'}")
            yield str(pty)
        finally:
            bridge.terminate()
            try:
                bridge.wait(timeout=5)
            except subprocess.TimeoutExpired:
                bridge.kill()
                bridge.wait()
            if bridge.stderr is not None:
                bridge.stderr.close()


# ---- the runner -------------------------------------------------------------------------------------------


def check_runner(runner: Path) -> None:
    if not (runner / "main.py").is_file():
        raise UserError(f"no MLPerf Tiny runner (main.py) in {runner}",
                        hint=f"--runner DIR or {RUNNER_ENV}=DIR: mlcommons/tiny benchmark/runner/")
    missing = [pkg for module, pkg in RUNNER_MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise UserError(f"the MLPerf Tiny runner needs Python packages that are missing: {', '.join(missing)}",
                        hint=INSTALL_HINT)


def run_runner(runner: Path, port: str, vid: int, pid: int, runner_args: list[str], workdir: Path,
               timeout_s: float | None = None) -> tuple[int, list[str], Path | None]:
    """Run the runner's main.py in a child with the port listing patched; returns its exit code, the
    errors it recorded and its session folder."""
    error_file = workdir / "runner-errors.txt"
    error_file.unlink(missing_ok=True)
    cfg = {"runner": str(runner), "port": port, "vid": vid, "pid": pid, "error_file": str(error_file),
           "argv": [str(runner / "main.py"), *runner_args]}
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    before = set((workdir / "sessions").glob("*")) if (workdir / "sessions").is_dir() else set()
    try:
        code = subprocess.run([sys.executable, "-c", BOOTSTRAP, json.dumps(cfg)], cwd=workdir, env=env,
                              stdin=subprocess.DEVNULL, timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:
        return 124, [f"the runner did not finish within {timeout_s:.0f} s"], None
    errors = error_file.read_text().splitlines() if error_file.is_file() else []
    sessions = sorted(set((workdir / "sessions").glob("*")) - before) if (workdir / "sessions").is_dir() else []
    return code, errors, (sessions[-1] if sessions else None)


def board_errors(session: Path | None) -> list[str]:
    """The e-[...] lines the board answered, from the runner's log."""
    log = session / "log.txt" if session is not None else None
    if log is None or not log.is_file():
        return []
    return re.findall(r"e-\[[^\]]*\]", log.read_text(errors="replace"))


def read_session(model: str, mode: str, folder: Path) -> RunnerSession:
    session = RunnerSession(model, mode, folder)
    results = folder / "results.json"
    if results.is_file():
        data = json.loads(results.read_text())
        session.windows = [w for w in (data if isinstance(data, list) else [data]) if isinstance(w, dict)]
    text = folder / "results.txt"
    if text.is_file():
        session.summary = [line.strip() for line in text.read_text().splitlines() if line.strip()]
    return session


def run(dataset: Path, mode: str, port: str | None = None, board: str = DEFAULT_BOARD, elf: Path | None = None,
        runner: Path | None = None, device_list: Path | None = None, test_script: Path | None = None,
        out: Path | None = None, timeout_s: float | None = None, paced: bool | None = None) -> RunnerSession:
    """The whole launch: checks, the emulated board if no port is given, the runner, its session.
    `paced`: the emulated board in wall-clock time (default: in performance mode only)."""
    paced = is_paced(mode, paced)
    runner = (runner or Path(os.environ.get(RUNNER_ENV) or DEFAULT_RUNNER)).resolve()
    check_runner(runner)
    device_list = (device_list or runner / DEFAULT_DEVICE_LIST).resolve()
    test_script = (test_script or runner / TEST_SCRIPTS[mode]).resolve()
    dataset = dataset.resolve()
    if not dataset.is_dir():
        raise UserError(f"no dataset folder {dataset}",
                        hint="a folder with one subfolder per benchmark (ic01/, kws01/, vww01/, ad01/) holding "
                             "y_labels.csv and the input files (docs/mlperf.md)")
    dut_entry(device_list)   # a bad devices yaml fails before anything starts
    base = (out or RESULTS_DIR / "mlperf-runner").resolve()
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=base))
    try:
        return _run_in(workdir, dataset, mode, port, board, elf, runner, device_list, test_script, timeout_s, paced)
    finally:
        if not (workdir / "sessions").is_dir():   # stopped before the runner wrote anything
            shutil.rmtree(workdir, ignore_errors=True)


def _run_in(workdir: Path, dataset: Path, mode: str, port: str | None, board: str, elf: Path | None, runner: Path,
            device_list: Path, test_script: Path, timeout_s: float | None, paced: bool) -> RunnerSession:
    dut = dut_entry(device_list)
    vid, pid = dut_usb_id(dut)
    baud = dut_baud(dut, mode)
    with contextlib.ExitStack() as stack:
        if port is None:
            port = stack.enter_context(emulated_port(board, elf, workdir, paced))
            if paced:
                print(f"emulator paced: {PACED_RATE} of wall time "
                      "(the runner times its performance windows by the wall clock)", flush=True)
        identity = identify(port, baud)
        count = check_dataset(dataset, identity.model, mode, identity.input_bytes,
                              script_loop_count(test_script, identity.model))
        print(f"board    {identity.name} on {port}: model {identity.model}"
              + (f", {identity.input_bytes:,} input bytes" if identity.input_bytes else "")
              + f"; runner sees it as USB {vid:04X}:{pid:04X} at {baud} baud", flush=True)
        print(f"dataset  {dataset / identity.model}: {count} files; {MODE_NAMES[mode]} mode "
              f"({test_script.name})", flush=True)
        args = [f"--dataset_path={dataset}", f"--test_script={test_script}", f"--device_list={device_list}",
                f"--mode={mode}"]
        code, errors, session = run_runner(runner, port, vid, pid, args, workdir, timeout_s)
    if code != 0 or errors:
        refused = board_errors(session)
        detail = errors[0] if errors else f"exit status {code}"
        if refused:
            raise UserError(f"the MLPerf Tiny runner stopped ({detail}); the board answered {refused[0]}",
                            hint="check the dataset's file sizes against the model's input (docs/mlperf.md)",
                            exit_code=1)
        raise UserError(f"the MLPerf Tiny runner stopped: {detail}"
                        + (f" (log: {session / 'log.txt'})" if session else ""), exit_code=1)
    if session is None:
        raise UserError(f"the MLPerf Tiny runner wrote no session below {workdir}", exit_code=1)
    return read_session(identity.model, mode, session)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host.mlperf_runner", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True,
                   help="the runner's dataset folder (subfolders ic01/, kws01/, vww01/, ad01/ with y_labels.csv)")
    p.add_argument("--mode", choices=("p", "a"), default="p", help="p: performance, a: accuracy (default: p)")
    p.add_argument("--port", help="a real board's serial port (default: boot the emulated --board in QEMU)")
    p.add_argument("--board", default=DEFAULT_BOARD, help="emulated board flashed with MLPERF=1 (default: %(default)s)")
    p.add_argument("--elf", type=Path, help="emulated board: this MLPerf build instead of build/flash/<board>/")
    p.add_argument("--runner", type=Path, help=f"the runner's folder (default: ${RUNNER_ENV} or {DEFAULT_RUNNER})")
    p.add_argument("--device-list", type=Path, help=f"the runner's devices yaml (default: its {DEFAULT_DEVICE_LIST})")
    p.add_argument("--test-script", type=Path, help="the runner's test script (default: its tests_performance.yaml "
                                                    "or tests_accuracy.yaml by --mode)")
    p.add_argument("--out", type=Path, help="where the runner's sessions go (default: results/mlperf-runner/)")
    p.add_argument("--pace", choices=("auto", "on", "off"), default="auto",
                   help=f"emulated board in wall-clock time, {PACED_RATE} (auto: in performance mode, "
                        "whose windows the runner times by the wall clock; off: as fast as QEMU runs)")
    return p


def _pace_said(args: argparse.Namespace, paced: bool | None) -> str:
    """How fast the board ran, for a hint."""
    if args.port is not None:
        return "the board at its own speed"
    return f"the emulated board paced at {PACED_RATE}" if is_paced(args.mode, paced) else "the emulated board unpaced"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.port is not None and args.pace == "on":
        raise UserError("--pace is for the emulated board; a real board (--port) runs at its own speed",
                        hint="drop --pace")
    paced = None if args.pace == "auto" else args.pace == "on"
    session = run(args.dataset, args.mode, args.port, args.board, args.elf, args.runner, args.device_list,
                  args.test_script, args.out, paced=paced)
    scores = session.scores
    print(f"runner   {session.model} {MODE_NAMES[session.mode]}: {len(scores)} m-results lines parsed "
          f"({len(scores[0]) if scores else 0} values each)")
    for line in session.summary:
        if "ulp-mlperf:" in line and "---" not in line:
            print(f"score    {line.split('ulp-mlperf:', 1)[1].strip()}")
    if any("ERROR 2" in line for line in session.summary):
        print(f"hint     ERROR 2: the five timed loops took under 10 s of wall time ({_pace_said(args, paced)}); "
              "a longer loop: --test-script with a larger `infer N W` (docs/mlperf.md, \"Pacing\")")
    print(f"session  {session.folder} (log.txt, results.txt, results.json)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
