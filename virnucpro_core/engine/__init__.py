"""Where and when embedding parts run: devices, worker processes, torchrun ranks, shards.

A backend only turns a list of sequences into rows (the ``Embedder`` contract); this
package decides which process and device computes each checkpoint part, so every
backend gets several devices, clusters and crash safety without knowing about them.

- :mod:`.devices`   ``--devices/--gpus/--parallel`` parsed and checked before any work
- :mod:`.parts`     the part plan (what is done, what to compute), part files, assembly
- :mod:`.local`     one device: parts run in this process (no start-up cost)
- :mod:`.workers`   N devices: one spawned worker process per device, fail-fast
- :mod:`.stop`      SIGINT/SIGTERM: keep finished parts, exit 130/143 with a resume hint
- :mod:`.distributed` torchrun ranks (gloo barriers; rank 0 drives)
- :mod:`.shards`    ``--shard i/N`` manifests and ``virnucpro aggregate`` checks
"""
