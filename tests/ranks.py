"""Running test scenarios in several gloo processes: the workers write one JSON line per scenario
and rank, and the parent turns them into {scenario: {rank: "ok" or the traceback}}, so a failure
names its scenario and rank, and a hang ends at a deadline instead of blocking the test run."""
import contextlib
import json
import os
import socket
import tempfile
import time
import traceback

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record_scenarios(rank, out_dir, scenarios):
    """In a worker: run each (name, thunk) and write its outcome and time to rank<rank>.jsonl;
    then wait for the other ranks. Without that wait, rank 0 could finish first and take the
    TCP store down while another rank still creates a group through it (seen: "Broken pipe")."""
    with open(os.path.join(out_dir, f"rank{rank}.jsonl"), "a") as f:
        for name, thunk in scenarios:
            start = time.perf_counter()
            try:
                thunk()
                status = "ok"
            except BaseException:  # noqa: BLE001  (reported to the parent)
                status = traceback.format_exc()
            f.write(json.dumps({"name": name, "status": status, "s": time.perf_counter() - start}) + "\n")
            f.flush()
    try:
        dist.barrier()
    except Exception:  # noqa: BLE001  (ranks already out of step: their scenarios report it)
        pass


@contextlib.contextmanager
def spawn_ranks(worker, world, names, deadline_s, *args):
    """Runs ``worker(rank, world, port, out_dir, *args)`` in ``world`` processes; yields
    ({name: {rank: status}}, out_dir) with out_dir still there. $KGQA_DIST_TIMES prints the times."""
    results = {name: {} for name in names}
    with tempfile.TemporaryDirectory() as out_dir:
        ctx = mp.start_processes(worker, args=(world, free_port(), out_dir, *args), nprocs=world, join=False,
                                 start_method="spawn")
        deadline = time.monotonic() + deadline_s
        problem = None
        try:
            while not ctx.join(timeout=2):
                if time.monotonic() > deadline:
                    problem = f"the {world} processes did not finish in {deadline_s} s"
                    break
        except Exception as e:  # noqa: BLE001  (a worker died outside a scenario)
            problem = f"a worker failed: {e}"
        finally:
            for p in ctx.processes:  # only the processes started here
                if p.is_alive():
                    p.kill()
                    p.join()
        for rank in range(world):
            path = os.path.join(out_dir, f"rank{rank}.jsonl")
            if os.path.exists(path):
                with open(path) as f:
                    for line in f:
                        rec = json.loads(line)
                        results[rec["name"]][rank] = rec["status"]
                        if os.environ.get("KGQA_DIST_TIMES"):
                            print(f"world {world} rank {rank} {rec['name']}: {rec['s']:.2f} s")
        for name in names:
            for rank in range(world):
                results[name].setdefault(rank, f"no result ({problem or 'the worker stopped before it'})")
        yield results, out_dir
