"""The rank entry of a data-parallel run: what ``torchrun ... -m workbench.distributed`` starts in each process.

Two ways in:
- ``torchrun --nproc-per-node 2 -m workbench.distributed --model cnn --epochs 5`` takes the flags of
  ``workbench run`` (the world size comes from torchrun; ``--nproc`` need not be given);
- ``--job FILE``, the job ``workbench.run`` writes when it launches a run itself.

Every rank ends the same way, whatever happened: a rank that raised leaves its one-line error for
the launcher (``record_failure``) and exits 1; the others meet, leave the group and exit 0 at once,
so torchrun never sees a gloo rank abort during interpreter shutdown.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if argv[:1] == ["--job"]:
        return _job(Path(argv[1]))
    from ..cli import main as cli_main

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if world > 1 and "--nproc" not in argv and "--config" not in argv:  # torchrun set the world: the config follows it
        argv = [*argv, "--nproc", str(local), "--nnodes", str(world // local)]
    return cli_main(["run", *argv], raise_errors=True)


def _job(path: Path) -> int:
    from ..config import RunConfig
    from ..pipeline import run
    from ..train.launch import LAUNCH_DIR_ENV

    job = json.loads(path.read_text())
    result = run(
        RunConfig.from_dict(job["config"]),
        store=job["store"],
        progress=job["progress"],
        resume=job["resume"],
        reuse=job["reuse"],
        start_from=job["start_from"],
        data_root=job["data_root"],
        tags=job["tags"],
    )
    if result is not None:  # rank 0
        (Path(os.environ.get(LAUNCH_DIR_ENV, path.parent)) / "result.json").write_text(
            json.dumps({"run_id": result.run_id})
        )
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except BaseException as error:  # noqa: BLE001  (whatever ended this rank, the launcher hears it in one line)
        from ..train.launch import record_failure

        record_failure(error)
        print(
            f"workbench: error on rank {os.environ.get('RANK', '0')}: {' '.join(str(error).split())[:500]}",
            file=sys.stderr,
            flush=True,
        )
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
