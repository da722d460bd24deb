"""The user's files are never emptied, replaced or created through a link: locks, devswitch init, hard links, and
writes on a full disk (a clean error, nothing half-written)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Child, children, clean_environ
from errorparts import parts, printed

from _devswitch import profiles
from _devswitch.cli import main
from _devswitch.errors import ConfigError, UsageError

VICTIM = "export PATH=$HOME/bin:$PATH  # the user's own file\n"
PROFILE = {"device": "cpu", "precision": "fp32"}


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim" / ".bashrc"
    victim.parent.mkdir()
    victim.write_text(VICTIM)
    return victim


# --- locks -------------------------------------------------------------------------------------------------


def test_a_report_whose_lock_is_a_link_never_empties_the_links_target(tmp_path):
    """save_report with ``runs.jsonl.lock -> victim``: the victim keeps its bytes, the records go beside the
    report, and the note names the lock."""
    from _devswitch.results import save_report

    victim = _victim(tmp_path)
    (tmp_path / "runs.jsonl.lock").symlink_to(victim)
    written, note = save_report(tmp_path / "runs.jsonl", [{"kind": "fit"}], {"plan": {}})
    assert victim.read_text() == VICTIM
    assert written is not None and written != tmp_path / "runs.jsonl" and '"kind":"fit"' in written.read_text()
    assert note is not None and str(tmp_path / "runs.jsonl.lock") in note and "symbolic link" in note
    assert (tmp_path / "runs.jsonl.lock").is_symlink()


# what the refusal of each kind of lock names (a folder is refused by open(2): its error, EISDIR, says so; the
# hard-linked victim has three names: its own and both locks')
LOCK_KINDS = {"symbolic link": "symbolic link", "dangling link": "symbolic link", "FIFO": "FIFO",
              "folder": "directory", "hard link": "3 names"}


@pytest.mark.parametrize("kind", list(LOCK_KINDS))
def test_a_lock_that_is_not_a_regular_file_of_its_own_is_refused_by_every_writer(tmp_path, kind):
    """Both writers (the report's append and files.edit behind --save-profile and init) open a lock only as a
    regular file of one name, never through a link, never truncated, never blocking on a FIFO."""
    from _devswitch.results import append_records

    victim = _victim(tmp_path)
    rc = tmp_path / ".devswitchrc"
    rc.write_text("device: cpu\n")
    for target in (tmp_path / "runs.jsonl", rc):
        lock = target.with_name(target.name + ".lock")
        if kind == "symbolic link":
            lock.symlink_to(victim)
        elif kind == "dangling link":
            lock.symlink_to(tmp_path / "victim" / "new-file")
        elif kind == "FIFO":
            os.mkfifo(lock)
        elif kind == "folder":
            lock.mkdir()
        else:
            os.link(victim, lock)
    lock = tmp_path / "runs.jsonl.lock"
    with pytest.raises(UsageError) as info:
        append_records(tmp_path / "runs.jsonl", [{"kind": "fit"}])
    parts(info, UsageError, where=str(lock), named=[str(lock), LOCK_KINDS[kind]],
          fix=None if kind == "folder" else f"remove {lock}")
    with pytest.raises(UsageError) as info:
        profiles.add(rc, "fast", PROFILE, "x")
    parts(info, UsageError, where=str(rc), named=[f"{rc}.lock", LOCK_KINDS[kind]])
    assert victim.read_text() == VICTIM and not (tmp_path / "victim" / "new-file").exists()
    assert rc.read_text() == "device: cpu\n" and not (tmp_path / "runs.jsonl").exists()


def test_a_lock_of_our_own_is_taken_and_no_lock_file_is_left_behind(tmp_path):
    """Appends under the report's lock, also 8 at a time (flock locks per open file, so threads contend as
    processes do): every line arrives whole, and no empty ``runs.jsonl.lock`` stays behind."""
    import threading

    from _devswitch.results import append_records

    append_records(tmp_path / "runs.jsonl", [{"kind": "fit"}])
    assert not (tmp_path / "runs.jsonl.lock").exists()

    def append(n: int) -> None:
        for i in range(25):
            append_records(tmp_path / "runs.jsonl", [{"kind": "fit", "model": f"{n}-{i}" * 50}])

    threads = [threading.Thread(target=append, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 201 and all(line.endswith("}") for line in lines)
    assert not (tmp_path / "runs.jsonl.lock").exists()


def test_one_lock_loop_times_out_naming_the_file_and_retakes_a_lock_removed_while_waited_for(tmp_path):
    """files.hold_lock is the one take-and-recheck loop (edit's and the reports'): with a timeout, a lock another
    holder keeps is a UsageError naming the file shown and the seconds waited; without one, the waiter takes the
    lock once its holder removes and releases it (the file it waited on is then unnamed), and leaves none behind."""
    import fcntl
    import threading

    from _devswitch.files import hold_lock

    lock, shown = tmp_path / "rc.lock", tmp_path / "rc"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    with pytest.raises(UsageError) as info, hold_lock(lock, shown, timeout=0.2):
        pass
    assert info.value.where == str(shown) and str(lock) in info.value.message and "0 s" in info.value.message
    taken = threading.Event()

    def wait_for_it() -> None:
        with hold_lock(lock):  # no timeout: waits as long as it takes
            taken.set()

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    assert not taken.wait(0.2)  # still held
    os.unlink(lock)  # the holder removes it while held, then releases (as hold_lock does)
    os.close(fd)
    waiter.join(10)
    assert taken.is_set() and not lock.exists()


def test_a_project_file_whose_reports_lock_is_a_link_is_refused_when_read(tmp_path):
    """The project check resolves the report and checks its lock: a shipped ``runs.jsonl.lock`` link is a
    ConfigError naming the file, the line and the link."""
    from _devswitch.config import resolve

    victim = _victim(tmp_path)
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    (project / ".devswitchrc").write_text("report: runs.jsonl\n")
    (project / "runs.jsonl.lock").symlink_to(victim)
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    parts(info, ConfigError, where=f"{project / '.devswitchrc'}:1:9", named=["'report'", "'runs.jsonl'", "lock"])
    (project / "runs.jsonl.lock").unlink()
    assert resolve({}, home, project).report == "runs.jsonl"


@pytest.mark.subprocess
def test_a_cloned_project_with_a_linked_lock_cannot_empty_a_file_through_a_fit(tmp_path):
    """The issue's case, for real: a project .devswitchrc naming runs.jsonl, a shipped runs.jsonl.lock ->
    victim, and ``python train.py`` that imports devswitch and fits: the victim keeps every byte."""
    victim = _victim(tmp_path)
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    (project / ".devswitchrc").write_text("report: runs.jsonl\n")
    (project / "runs.jsonl.lock").symlink_to(victim)
    (project / "train.py").write_text(
        "import devswitch\nimport numpy as np\nimport keras\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])\n"
        "model.compile('sgd', 'mse')\n"
        "model.fit(np.zeros((8, 4)), np.zeros((8, 1)), epochs=1, verbose=0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "train.py"],
        cwd=project,
        env=clean_environ(HOME=str(home), KERAS_BACKEND="tensorflow"),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert victim.read_text() == VICTIM, proc.stderr[-2000:]
    printed(proc.stderr, where=f"{project / '.devswitchrc'}:1:9", named=["'runs.jsonl'", "lock"])
    assert (project / "runs.jsonl.lock").is_symlink()


# --- devswitch init: the same writer as --save-profile --------------------------------------------------------


@pytest.fixture
def cwd(monkeypatch, tmp_path) -> Path:
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(project)
    return project


def test_init_refuses_a_dangling_link_and_creates_nothing_where_it_points(cwd, tmp_path, capsys):
    (cwd / ".devswitchrc").symlink_to(tmp_path / "home" / ".bash_profile")
    for argv in (["init"], ["init", "--force"]):
        assert main(argv) == 2
        printed(capsys.readouterr().err, where=str(cwd / ".devswitchrc"), named=[str(tmp_path / "home" / ".bash_profile")],
                fix="remove the link")
    assert not (tmp_path / "home" / ".bash_profile").exists() and (cwd / ".devswitchrc").is_symlink()


def test_init_force_leaves_a_read_only_link_target_untouched(cwd, tmp_path, capsys):
    target = tmp_path / "home" / "dotfile"
    target.write_text("device: cpu\n")
    target.chmod(0o444)
    (cwd / ".devswitchrc").symlink_to(target)
    assert main(["init", "--force"]) == 2
    printed(capsys.readouterr().err, where=str(cwd / ".devswitchrc"), named=[str(target), "0444"], fix="chmod u+w")
    assert target.read_text() == "device: cpu\n"


def test_init_refuses_a_folder_in_the_files_place(cwd, capsys):
    (cwd / ".devswitchrc").mkdir()
    assert main(["init", "--force"]) == 2
    printed(capsys.readouterr().err, where=str(cwd / ".devswitchrc"), named=[str(cwd / ".devswitchrc")])


def test_init_writes_atomically_through_a_link_to_an_existing_file_and_keeps_its_mode(cwd, tmp_path, capsys):
    from _devswitch.docs import render_example

    target = tmp_path / "home" / "dotfile"
    target.write_text("device: cpu\n")
    target.chmod(0o640)
    (cwd / ".devswitchrc").symlink_to(target)
    assert main(["init", "--force"]) == 0
    assert f"wrote {target} (through {cwd / '.devswitchrc'})" in capsys.readouterr().out
    assert target.read_text() == render_example() and (cwd / ".devswitchrc").is_symlink()
    assert oct(target.stat().st_mode & 0o777) == oct(0o640)
    assert sorted(p.name for p in target.parent.iterdir()) == ["dotfile"]  # no lock, no temporary left


# --- hard links: refused, both names keep the same text ----------------------------------------------------


def test_a_hard_linked_devswitchrc_is_refused_by_save_profile_and_init(cwd, tmp_path, capsys):
    """A rewrite renames a new file over one name: the other names would keep the old text. devswitch refuses
    (files.writable_target) before anything runs, and the file keeps one content under both names."""
    rc = cwd / ".devswitchrc"
    rc.write_text("device: cpu\n")
    other = tmp_path / "home" / "shared-rc"
    os.link(rc, other)
    for write in (lambda: profiles.check(rc, "fast"), lambda: profiles.add(rc, "fast", PROFILE, "x")):
        with pytest.raises(UsageError) as info:
            write()
        parts(info, UsageError, where=str(rc), named=["2 names"])
    assert main(["init", "--force"]) == 2
    printed(capsys.readouterr().err, where=str(rc), named=["2 names"])
    assert rc.read_text() == other.read_text() == "device: cpu\n" and os.path.samefile(rc, other)


# --- a full disk: RLIMIT_FSIZE in a child (SIGXFSZ ignored, so a write past the limit gets EFBIG) --------------


def _limited(limit: int, argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    import resource
    import signal

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # ignored stays ignored across exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        env=clean_environ(**env),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        preexec_fn=limit_files,
    )


@pytest.mark.subprocess
def test_compare_on_a_full_disk_is_exit_2_before_anything_runs(tmp_path):
    """The up-front check writes 64 KiB (a 0-byte probe passed on a full disk, and the first spec then ended
    in a traceback): exit 2, nothing run, no scratch folder left."""
    proc = _limited(
        16 << 10,
        ["-m", "devswitch", "compare", "mlp", "--devices", "cpu", "--precisions", "fp32", "--out", "out"],
        tmp_path,
        HOME=str(tmp_path),
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    printed(proc.stderr, where="--out out", named=["File too large", "64 KiB"])  # the system's reason, the probe
    assert "Traceback" not in proc.stderr and list((tmp_path / "out").iterdir()) == []


@pytest.mark.subprocess
def test_a_profile_init_and_a_report_on_a_full_disk_are_clean_errors_and_leave_the_files_as_they_were(tmp_path):
    """--save-profile's writer and init: a UsageError (exit 2) and the file unchanged, no temporary left; the
    timing report: the run's records in the note, no half-written file anywhere."""
    home = tmp_path / "home"
    home.mkdir()
    rc = tmp_path / ".devswitchrc"
    original = "# team settings\n" + "# padding line for a file of some size\n" * 100 + "device: cpu\n"
    rc.write_text(original)
    code = (
        "from pathlib import Path\nfrom _devswitch import profiles\nfrom _devswitch.errors import UsageError\n"
        "from _devswitch.results import save_report\n"
        "try:\n    profiles.add(Path('.devswitchrc'), 'fast', {'device': 'cpu'}, 'x')\n"
        "except UsageError as error:\n    print('PROFILE', error.exit_code, error)\n"
        "written, note = save_report(Path('runs.jsonl'), [{'kind': 'fit', 'pad': 'x' * 8192}], {})\n"
        "print('REPORT', written, note)\n"
    )
    proc = _limited(len(original), ["-c", code], tmp_path, HOME=str(home), DEVSWITCH_DISABLE="1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = {line.split(" ", 1)[0]: line for line in proc.stdout.splitlines() if line.startswith(("PROFILE", "REPORT"))}
    assert said["PROFILE"].startswith(f"PROFILE 2 {rc}: ") and "File too large" in said["PROFILE"]  # exit code, file
    assert said["REPORT"].startswith("REPORT None ") and "runs.jsonl" in said["REPORT"]  # nothing written; the file
    assert '"pad":"xxxx' in proc.stdout
    assert rc.read_text() == original
    # the report's own lock is taken and removed (no empty lock file stays behind)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".devswitchrc", "home", "runs.jsonl"]
    assert (tmp_path / "runs.jsonl").stat().st_size == 0
    (tmp_path / "runs.jsonl").unlink()
    rc.unlink()
    proc = _limited(512, ["-m", "devswitch", "init"], tmp_path, HOME=str(home))
    assert proc.returncode == 2, proc.stderr[-2000:]
    printed(proc.stderr, where=str(tmp_path / ".devswitchrc"), named=["File too large"])
    assert "Traceback" not in proc.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["home"]


# --- a disk that fills up after the up-front check: RLIMIT_FSIZE lowered in compare after its first column -------

# compare in a child whose file-size limit drops to 0 (SIGXFSZ ignored: a write gets EFBIG, as on a full disk)
# once its first column has started (a configuration, a worker of rounds, a script's run), and (with "restore")
# is raised again when the run is over, so that the results files can be written
FILLING = """
import resource, signal, sys
from _devswitch import compare
from _devswitch.compare import matrix, rounds, script
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
where, restore, argv = sys.argv[1], sys.argv[2] == "restore", sys.argv[3:]
module, name = {"matrix": (matrix, "run_configuration"), "rounds": (rounds, "_start"),
                "script": (script, "run_once")}[where]
first = getattr(module, name)
def then_full(*args, **kwargs):
    try:
        return first(*args, **kwargs)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # the disk takes nothing more from here on
setattr(module, name, then_full)
def run_then(run):
    def ran(*args, **kwargs):
        try:
            return run(*args, **kwargs)
        finally:
            if restore:
                resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    return ran
compare.run_matrix = run_then(compare.run_matrix)
script.run_scripts = run_then(script.run_scripts)
from _devswitch.cli import main
sys.exit(main(argv))
"""
THREE = ["--devices", "cpu", "--precisions", "fp32", "--vary", "threads=1,2,3", "--out", "out"]
SMALL = ["--batch-sizes", "1", "--warmup", "1", "--iterations", "3", "--accuracy-samples", "0"]
SMALL += ["--no-predict-baseline", "--no-peak-probe"]


def _filling(root: Path) -> dict[str, Child]:
    def prepare(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hello.py").write_text("print('hello')\n")

    def child(where: str, restore: bool, *argv: str) -> Child:
        return Child(["-c", FILLING, where, "restore" if restore else "-", *argv], prepare=prepare, timeout=240)

    return {
        "sequential": child("matrix", True, "compare", "mlp", *THREE, *SMALL, "--rounds", "1"),
        "rounds": child("rounds", True, "compare", "mlp", *THREE, *SMALL, "--rounds", "2"),
        "script": child("script", True, "compare", "--script", "hello.py", *THREE),
        "no results": child("matrix", False, "compare", "mlp", *THREE, *SMALL, "--rounds", "1"),
    }


filling = children(_filling)


@pytest.mark.subprocess
@pytest.mark.parametrize("mode", ["sequential", "rounds", "script"])
def test_a_disk_that_fills_up_during_compare_fails_the_columns_and_keeps_the_finished_rows(filling, mode):
    """The first column is measured; the second's spec cannot be written (EFBIG from the kernel): its column
    fails with the reason, the third is not started, and the results files hold all three (exit 5, no traceback)."""
    proc, folder = filling(mode)
    assert proc.returncode == 5, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    cells = json.loads((folder / "out" / "results.json").read_text())["cells"]
    first, second, third = (cell["status"] for cell in cells)
    assert first == "ok"
    # a status is "failed: <why>": the second names the file it could not write and the system's reason; the
    # third, not started, names the same
    written = re.search(r"File too large: (/\S+threads=2\S*\.spec\.json)", second)
    assert second.startswith("failed: ") and written, second
    assert third.startswith("failed: not started") and written.group(1) in third, third
    assert all((folder / "out" / name).is_file() for name in ("results.csv", "results.md", "results.html"))


@pytest.mark.subprocess
def test_results_files_that_cannot_be_written_are_exit_2_after_the_table(filling):
    """Not 1, the report gate's "regression": the table is printed, and the error names the file and why."""
    proc, folder = filling("no results")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "threads=1" in proc.stdout and "threads=3" in proc.stdout  # the table, on stdout
    printed(proc.stderr, named=["out/results.json", "File too large"])  # the file as given (--out out), the reason
    assert not (folder / "out" / "results.json").exists()
