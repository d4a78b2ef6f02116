"""``python -m studies.surrogate``: write a surrogate training dataset (README.md).

Example (the test's size; about 10 s on 2 cores)::

    python -m studies.surrogate --store surrogate.zarr --trials 1000 --tstop 50 \\
        --synapses 10 --segment-length 50 --weight 0.01 --rate 20

``--scheduler tcp://host:8786`` runs the chunks on a Dask cluster; ``--local-cluster 4``
starts a local one of 4 single-threaded worker processes.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from .recipe import SurrogateSettings, make_dataset


def main(argv: list[str] | None = None) -> None:
    defaults = SurrogateSettings()
    parser = argparse.ArgumentParser(
        prog="python -m studies.surrogate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--store", required=True, help="Zarr store directory (resumed if present)")
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--tstop", type=float, default=defaults.tstop, help="ms")
    parser.add_argument("--synapses", type=int, default=defaults.n_synapses)
    parser.add_argument("--synapse", choices=("ExpSyn", "AmpaNmda"), default=defaults.synapse)
    parser.add_argument("--segment-length", type=float, default=defaults.segment_length,
                        help="µm (1: the 5,550-node cell)")  # fmt: skip
    parser.add_argument("--weight", type=float, default=defaults.weight, help="µS")
    parser.add_argument("--rate", type=float, default=defaults.rate_hz, help="Hz per synapse")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--chunk-size", type=int, default=None)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, help="address of a Dask scheduler")
    where.add_argument("--local-cluster", type=int, default=0, metavar="WORKERS",
                       help="start a local Dask cluster of this many worker processes")  # fmt: skip
    arguments = parser.parse_args(argv)
    settings = SurrogateSettings(
        segment_length=arguments.segment_length,
        n_synapses=arguments.synapses,
        synapse=arguments.synapse,
        weight=arguments.weight,
        rate_hz=arguments.rate,
        tstop=arguments.tstop,
        seed=arguments.seed,
    )
    cluster = client = None
    if arguments.local_cluster:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=arguments.local_cluster, threads_per_worker=1,
                               processes=True)  # fmt: skip
        client = Client(cluster)
    elif arguments.scheduler:
        client = arguments.scheduler
    try:
        result, seconds = make_dataset(arguments.store, arguments.trials, settings,
                                       client=client, chunk_size=arguments.chunk_size)  # fmt: skip
    finally:
        if cluster is not None:
            client.close()
            cluster.close()
    summary = {
        "store": arguments.store,
        "trials": arguments.trials,
        "seconds": round(seconds, 2),
        "chunk_size": result.metadata["chunk_size"],
        "model": result.metadata["model_summary"],
        "settings": asdict(settings),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
