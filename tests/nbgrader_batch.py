"""Run a list of nbgrader commands in one Python process, each exactly as ``nbgrader ARGS...`` would from its folder.

    python nbgrader_batch.py COMMANDS.json RESULTS.json

``COMMANDS.json``: a list of ``{"cwd": folder, "argv": ["autograde", "hw1"]}``. Each command runs in its folder (where
nbgrader reads ``nbgrader_config.py``) through ``NbGraderApp``, the application the ``nbgrader`` command starts, and is
reset afterwards, as nbgrader's own test suite does. ``RESULTS.json``: ``[{"argv", "cwd", "code", "log"}]``, one per
command run; the batch stops at the first command that fails. One process instead of one per command saves about 3 s
of start-up per command (the course cycle runs about a hundred)."""
import io
import json
import logging
import os
import sys


#: what jupyter_client says when a new kernel dies before it answers: with two autograde processes starting kernels
#: at once, both can be handed the same free TCP port; the loser dies. Not a grading error: the command is rerun once.
STARTUP_RACE = "Kernel died before replying to kernel_info"


def run(cwd: str, argv: list[str]) -> tuple[int, str]:
    from jupyter_core.application import NoStart
    from nbgrader.apps import NbGraderApp

    os.chdir(cwd)
    app = NbGraderApp.instance()
    log = io.StringIO()
    try:
        app.initialize(argv)
        app.init_logging(logging.StreamHandler, [log], color=False, subapps=True)
        app.start()
        code = 0
    except NoStart:
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the caller reads the log
        log.write(f"{type(exc).__name__}: {exc}\n")
        code = 1
    finally:
        app.reset()
    return code, log.getvalue()


def main(commands_path: str, results_path: str) -> int:
    with open(commands_path) as f:
        commands = json.load(f)
    results = []
    for cmd in commands:
        code, log = run(cmd["cwd"], cmd["argv"])
        if code != 0 and STARTUP_RACE in log:   # a kernel lost the race for a free port at start-up: run it again once
            code, again = run(cmd["cwd"], cmd["argv"])
            log = f"{log}\n[retried once after a kernel start-up failure]\n{again}"
        results.append({"argv": cmd["argv"], "cwd": cmd["cwd"], "code": code, "log": log})
        if code != 0:
            break
    with open(results_path, "w") as f:
        json.dump(results, f)
    return 0 if all(r["code"] == 0 for r in results) and len(results) == len(commands) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
