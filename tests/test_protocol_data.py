"""A protocol is data: nothing read from a protocol file (or --set) is imported, evaluated or unpickled.

- `labbench validate` and `labbench run` refuse, with exit 2 and the key named, protocols whose
  driver, estimator or cl module names code (`this:X`, `os:system`, a module in the current
  directory, an estimator outside the allow-list), and import nothing: a sentinel module in the
  working directory would write a file if it were imported;
- Ray workers of a bench do not have the run's working directory on their import path;
- an AST scan finds every call that can run code named by a string (import_module, __import__,
  eval, exec, pickle.load(s), entry-point loads) in labbench/, drivers/ and readouts/ and checks
  each against a reviewed list of safe sites: a new call site fails until it is reviewed here.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labbench.engine.ray_runtime import RAY_ENV

ROOT = Path(__file__).resolve().parents[1]

SENTINEL = """
import pathlib
pathlib.Path(__file__).with_name("SENTINEL_IMPORTED").write_text("imported")
class X:  # an estimator- and driver-shaped thing, were it ever reached
    def fit(self, *a): return self
"""

BASE = """
[protocol]
name = "hostile"
[device]
driver = {driver}
params = {params}
[task]
name = "narma"
[run]
washout = 50
train = 200
test = 50
block = 50
[[readouts]]
{readout}
"""

#: name -> (protocol text, extra CLI args, the key the refusal must name)
CASES = {
    "zen": (dict(driver='"this:X"'), [], "device.driver"),
    "os_system": (dict(driver='"os:system"'), [], "device.driver"),
    "cwd_module": (dict(driver='"evil_sentinel:X"'), [], "device.driver"),
    "estimator_cwd": (dict(readout='kind = "sklearn"\nestimator = "evil_sentinel.X"'), [], "readouts[0].estimator"),
    "estimator_os": (dict(readout='kind = "sklearn"\nestimator = "os.system"'), [], "readouts[0].estimator"),
    "cl_module": (dict(driver='"mea"', params='{ backend = "cl", cl = { module = "evil_sentinel" } }'), ["--mock"],
                  "device.params.cl"),
}


def _protocol(driver: str = '"esn"', params: str = "{ units = 20 }", readout: str = 'kind = "ridge"') -> str:
    return BASE.format(driver=driver, params=params, readout=readout)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH", "LABBENCH_CL_MODULE")}
    env.update(RAY_ENV)
    return env


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "evil_sentinel.py").write_text(SENTINEL)
    return work


#: runs in a fresh interpreter whose working directory (on its import path, as with ``python -m``)
#: holds the sentinel; it validates a harmless protocol once (which imports what validation needs:
#: the CLI, the drivers' registry, scikit-learn), then forks a child per case, which runs ``labbench
#: <args>`` exactly as the command does (``main()`` on ``sys.argv``) with its stdout and stderr in
#: files: every case starts from the same process state, at a fork's cost instead of a new
#: interpreter and those imports (~2 s each, 12 cases)
_FORK_EACH_CASE = """
import contextlib, io, json, os, sys
import labbench.cli
with contextlib.redirect_stdout(io.StringIO()):
    assert labbench.cli.main(["validate", sys.argv[2]]) == 0, "the harmless protocol was refused"
for name, args in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            for fd, stream in ((1, "out"), (2, "err")):
                os.dup2(os.open(f"{name}.{stream}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.argv = ["labbench", *args]
            code = labbench.cli.main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    print(json.dumps([name, [code, os.path.exists("SENTINEL_IMPORTED"), os.path.exists("runs")]]), flush=True)
"""


@pytest.mark.parametrize("command", ["validate", "run"])
def test_protocols_naming_code_are_refused_and_nothing_is_imported(hostile_dir: Path, command: str):
    cases = []
    for name, (fields, extra, _key) in CASES.items():
        proto = hostile_dir / f"{name}.toml"
        proto.write_text(_protocol(**fields))
        args = [command, proto.name, *extra]
        if command == "run":
            args += ["--quiet", "--store-root", str(hostile_dir / "runs")]
        cases.append((name, args))
    (hostile_dir / "harmless.toml").write_text(_protocol())
    proc = subprocess.run([sys.executable, "-c", _FORK_EACH_CASE, json.dumps(cases), "harmless.toml"],
                          cwd=hostile_dir, env=_env(),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"the case runner failed:\n{proc.stdout}\n{proc.stderr}"
    after = dict(json.loads(line) for line in proc.stdout.splitlines())   # name -> [exit, sentinel, store]
    assert list(after) == list(CASES), proc.stdout
    for name, (_fields, _extra, key) in CASES.items():
        (code, sentinel, store), proto = after[name], f"{name}.toml"
        stdout, stderr = ((hostile_dir / f"{name}.{s}").read_text() for s in ("out", "err"))
        out = stdout + stderr
        assert code == 2, f"{command} {name}: exit {code}\n{out}"
        assert f"{proto}: {key}" in stderr, f"{command} {name}: the refusal does not name {key}:\n{out}"
        assert "Beautiful is better than ugly" not in out, f"{command} {name}: `this` was imported"
        assert not sentinel, f"{command} {name}: evil_sentinel was imported"
        assert not store, f"{command} {name}: a store was created"
    assert "Beautiful is better than ugly" not in proc.stderr, f"{command}: `this` was imported"
    assert not (hostile_dir / "SENTINEL_IMPORTED").exists(), f"{command}: evil_sentinel was imported"


def test_the_same_names_are_refused_in_python_and_the_errors_name_the_key(hostile_dir, monkeypatch):
    from labbench.spec.protocol import ProtocolError, from_text

    monkeypatch.chdir(hostile_dir)
    monkeypatch.syspath_prepend(str(hostile_dir))
    imported: list[str] = []
    import importlib

    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda n, *a, **k: (imported.append(n), real(n, *a, **k))[1])
    for name, (fields, extra, key) in CASES.items():
        with pytest.raises(ProtocolError) as err:
            from_text(_protocol(**fields), source=name, mock="--mock" in extra)
        assert any(p.startswith(key) for p in err.value.problems), (name, err.value.problems)
    assert "evil_sentinel" not in sys.modules and not (hostile_dir / "SENTINEL_IMPORTED").exists()
    assert not {"this", "os", "evil_sentinel"} & set(imported), imported


def test_a_driver_under_development_is_named_on_the_command_line(tmp_path: Path):
    """--driver-path NAME=module:Class is the explicit way (the module on PYTHONPATH, not the cwd)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "my_rig.py").write_text(textwrap.dedent("""
        from labbench.drivers.identity import Identity

        class MyRig(Identity):
            '''A rig under development.'''
    """))
    proto = tmp_path / "rig.toml"
    proto.write_text(_protocol(driver='"rig"', params="{}"))
    env = {**_env(), "PYTHONPATH": str(lib)}
    base = [sys.executable, "-m", "labbench.cli", "validate", str(proto)]
    refused = subprocess.run(base, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "device.driver: unknown driver 'rig'" in refused.stderr, refused.stderr
    ok = subprocess.run([*base, "--driver-path", "rig=my_rig:MyRig"], cwd=tmp_path, env=env, capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and "device rig" in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run([*base, "--driver-path", "rig=my_rig:Nope"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "--driver-path" in bad.stderr and "Nope" in bad.stderr, bad.stderr


def test_register_driver_is_the_python_way():
    import labbench as lb
    from labbench.drivers.identity import Identity
    from labbench.spec.protocol import from_text

    class Rig(Identity):
        pass

    with pytest.raises(KeyError, match="unknown driver 'rig'"):
        lb.get_driver("rig")
    lb.register_driver("rig", Rig)
    try:
        proto = from_text(_protocol(driver='"rig"', params="{}"))
        assert proto.driver_class() is Rig and lb.get_driver("rig") is Rig
    finally:
        lb.register_driver("rig", None)
    with pytest.raises(ValueError, match="simple name"):
        lb.register_driver("a:b", Rig)
    with pytest.raises(TypeError, match="not a Reservoir subclass"):
        lb.register_driver("rig", dict)


# ---------------------------------------------------------------------------------------------
# Ray workers do not import from the run's working directory
# ---------------------------------------------------------------------------------------------
WORKER_PROBE = """
import importlib.util, json, os, sys
from labbench.engine.ray_runtime import ensure_ray
ensure_ray()
import ray
from labbench.drivers.identity import Identity
from labbench.engine.actors import DeviceActor

class Probe(Identity):
    # sent by value (defined in __main__): reports what its worker can import
    def describe(self):
        return {"sentinel": importlib.util.find_spec("evil_sentinel") is not None,
                "cwd_on_path": any(os.path.abspath(p or ".") == os.getcwd() for p in sys.path)}

def probe():
    return {"sentinel": importlib.util.find_spec("evil_sentinel") is not None,
            "cwd_on_path": any(os.path.abspath(p or ".") == os.getcwd() for p in sys.path)}

device = ray.remote(DeviceActor).options(num_cpus=0).remote(Probe, {"n_inputs": 1})
class Reader:   # as a trainer actor: another actor process of the job
    def probe(self):
        return probe()

reader = ray.remote(Reader).options(num_cpus=0).remote()
out = {"device": ray.get(device.info.remote(), timeout=120)["describe"],
       "actor": ray.get(reader.probe.remote(), timeout=120),
       "task": ray.get(ray.remote(probe).options(num_cpus=0).remote(), timeout=120)}
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


@pytest.mark.slow
def test_ray_workers_do_not_import_from_the_working_directory(hostile_dir: Path, tmp_path: Path):
    script_dir = tmp_path / "script"
    script_dir.mkdir()
    script = script_dir / "probe.py"
    script.write_text(WORKER_PROBE)
    proc = subprocess.run([sys.executable, str(script)], cwd=hostile_dir, env=_env(), capture_output=True,
                          text=True, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    result = json.loads(lines[-1].removeprefix("RESULT "))
    # a device actor (DeviceActor, as the bench starts it) and a plain task (as sweep trials and
    # trainers run) live in workers whose import path leaves out the driver's working directory
    assert result["device"] == {"sentinel": False, "cwd_on_path": False}, result
    assert result["actor"] == {"sentinel": False, "cwd_on_path": False}, result
    assert result["task"] == {"sentinel": False, "cwd_on_path": False}, result
    assert not (hostile_dir / "SENTINEL_IMPORTED").exists()


# ---------------------------------------------------------------------------------------------
# every call that can run code named by a string, reviewed
# ---------------------------------------------------------------------------------------------
#: (file, enclosing function, call) -> why no protocol value can reach it
SAFE_SITES = {
    ("labbench/reservoir.py", "load_driver_path", "importlib.import_module"):
        "--driver-path NAME=module:Class: the command-line user's explicit choice, never a protocol value",
    ("labbench/reservoir.py", "get_driver", "eps[name].load"):
        "entry point of an installed package (group labbench.drivers), looked up by a name that is a key of it",
    ("labbench/reservoir.py", "list_devices", "src.load"):
        "entry points of installed packages, listed by `labbench devices`",
    ("labbench/engine/trained.py", "unpack", "pickle.loads"):
        "a trained pipeline pickled by labbench's own trainer actor (Packed.of) and carried through the run's "
        "process to its device actor; never a protocol, store or file value",
    ("labbench/engine/warm_pool.py", "__init__", "ray.cloudpickle.loads"):
        "the run's device configuration (the driver class already resolved from the labbench.drivers entry "
        "points, validated parameters) that labbench's run process handed the pool's supervisor, read back by "
        "the restarted host; never a protocol's text",
    ("labbench/engine/warm_pool.py", "_preimport", "ep.load"):
        "every entry point of the installed group labbench.drivers, pre-imported by a warm host; no name is "
        "looked up",
    ("readouts/__init__.py", "readout_class", "importlib.import_module"):
        "a constant module path of the READOUT_KINDS table, looked up by a kind that is a key of it",
    ("labbench/engine/live.py", "load_model", "pickle.loads"):
        "a model file the user named with `labbench train --model` (or passed in Python); never a protocol value",
    ("drivers/mea/cl_backend.py", "import_cl", "importlib.import_module"):
        "'cl', or $LABBENCH_CL_MODULE from the environment of the person running the bench; never a protocol value",
    ("readouts/__init__.py", "estimator_class", "importlib.import_module"):
        "a constant of the ESTIMATORS table, looked up by an allow-listed name",
    ("readouts/__init__.py", "estimator_class", "_estimator_entry_points()[name].load"):
        "entry point of an installed package (group labbench.estimators), looked up by a name that is a key of it",
    ("drivers/loihi/lava_worker.py", "<module>", "_spec.loader.exec_module"):
        "the worker's wire module: $LABBENCH_WORKER_WIRE, which PythonWorker sets to its own worker_wire.py, or "
        "the file beside; the Lava interpreter itself comes from $LABBENCH_LAVA_PYTHON or .venv-lava, never a protocol",
    ("readouts/__init__.py", "module_class", "importlib.import_module"):
        "a constant of the MODULES table, looked up by a module kind that is a key of it",
}

_DANGEROUS_NAMES = {"eval", "exec", "compile", "__import__", "import_module", "execfile", "run_path", "run_module"}
_DANGEROUS_ATTRS = {"import_module", "__import__", "load", "loads", "load_module", "exec_module", "run_path",
                    "run_module", "Unpickler", "load_entry_point"}
#: receivers of a .load/.loads that parse data and cannot run code
_DATA_RECEIVERS = {"json", "tomllib", "tomli"}


def scan_calls(source: str, path: str) -> list[tuple[str, str, str, int]]:
    """(file, enclosing function, call, line) of every call that could run code named by a string."""
    tree = ast.parse(source)
    from_imports = {alias.asname or alias.name: node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) for alias in node.names}
    found: list[tuple[str, str, str, int]] = []
    stack: list[str] = []

    class Visitor(ast.NodeVisitor):
        def _scope(self, node):
            stack.append(node.name)
            self.generic_visit(node)
            stack.pop()

        visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scope

        def visit_Call(self, node: ast.Call) -> None:
            fn = node.func
            flagged = False
            if isinstance(fn, ast.Name):
                origin = from_imports.get(fn.id)
                flagged = fn.id in _DANGEROUS_NAMES or origin in (
                    "pickle", "cloudpickle", "dill", "marshal", "shelve", "joblib", "importlib", "runpy")
            elif isinstance(fn, ast.Attribute) and fn.attr in _DANGEROUS_ATTRS:
                receiver = ast.unparse(fn.value)
                flagged = receiver.split(".")[0] not in _DATA_RECEIVERS
                if receiver in ("np", "numpy") and fn.attr == "load":   # numpy refuses pickles unless told
                    flagged = any(k.arg == "allow_pickle" for k in node.keywords)
                if receiver == "builder":   # llvmlite's IR builder (a memory load in generated code)
                    flagged = False
            if flagged:
                scope = stack[-1] if stack else "<module>"
                found.append((path, scope, ast.unparse(fn), node.lineno))
            self.generic_visit(node)

    Visitor().visit(tree)
    return found


def _all_sites() -> list[tuple[str, str, str, int]]:
    out = []
    for top in ("labbench", "drivers", "readouts"):
        for f in sorted((ROOT / top).rglob("*.py")):
            out += scan_calls(f.read_text(encoding="utf-8"), f.relative_to(ROOT).as_posix())
    return out


def test_every_call_that_can_run_named_code_is_a_reviewed_safe_site():
    sites = _all_sites()
    unreviewed = [s for s in sites if s[:3] not in SAFE_SITES]
    assert not unreviewed, ("calls that can import, evaluate or unpickle what a string names, not reviewed in "
                            "tests/test_protocol_data.py SAFE_SITES (add each with why no protocol value reaches "
                            "it):\n" + "\n".join(f"  {f}:{line} in {fn}: {call}(...)" for f, fn, call, line in unreviewed))
    stale = set(SAFE_SITES) - {s[:3] for s in sites}
    assert not stale, f"SAFE_SITES lists calls that no longer exist: {sorted(stale)}"


def test_the_scan_catches_a_new_call_site():
    code = textwrap.dedent("""
        import importlib, pickle
        from importlib import import_module
        def from_protocol(value, blob):
            importlib.import_module(value)
            import_module(value)
            __import__(value)
            eval(value)
            exec(value)
            pickle.loads(blob)
            entry_points(group="x")[value].load()
            np.load(value, allow_pickle=True)
        def harmless(text):
            json.loads(text)
            np.load(text)
    """)
    calls = [c for _, fn, c, _ in scan_calls(code, "x.py") if fn == "from_protocol"]
    assert calls == ["importlib.import_module", "import_module", "__import__", "eval", "exec", "pickle.loads",
                     'entry_points(group=\'x\')[value].load', "np.load"]
    assert not [c for c in scan_calls(code, "x.py") if c[1] == "harmless"]
