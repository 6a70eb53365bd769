"""Labelled worlds: oracle-relaxed crystals over many chemical systems, with a fixed hold-out.

    gnomon world build [--workers 2]      # resumable; an hour or two on 2 cores
    gnomon world grow --per-system 85     # one more wave on the shipped world; resumable
    gnomon world cover --per-system 8     # the cation–anion binaries it lacks; resumable
    gnomon world coverage                 # which cation–anion pairs the world holds
    gnomon world status                   # how far a build, grow or cover has come
    gnomon world check                    # verify the shipped files' hashes
    gnomon model pretrain                 # the shipped screening model, trained on the world

Everything the project says about its screening model is measured on such a world, so it is
made the way a campaign makes its candidates and labelled the way a campaign labels them:

* **Systems** (:mod:`~gnomon.world.systems`): a fixed, seeded choice of binaries, ternaries
  and quaternaries over 48 elements, and every element's reference.
* **Waves 1 and 2** (:mod:`~gnomon.world.plan`, :mod:`~gnomon.world.build`): SAPS on the
  prototype library and random search, then SAPS on the world's own near-hull compounds.
* **Oracle** (:mod:`~gnomon.world.oracle`): the CHGNet engine with the quickstart campaign's
  settings (fmax, steps), one calculator per worker process; failures kept with their reason.
* **Labels** (:mod:`~gnomon.world.label`): formation energy and e_above_hull from gnomon's
  hull engine, per system, over the whole world.
* **Hold-out:** a seeded 20 % of the systems of each arity, whole systems, in
  ``heldout.json``. Training (the shipped pretrained model, :mod:`~gnomon.world.pretrain`)
  never sees them.
* **Waves 3, 4, ...** (:mod:`~gnomon.world.grow`, :mod:`~gnomon.world.plan_grow`): more of
  the same for every system, nothing the world already holds.
* **Cover** (:mod:`~gnomon.world.cover`, :mod:`~gnomon.world.plan_cover`,
  :mod:`~gnomon.world.coverage`): chemistry before depth, every cation–anion binary of the
  element set the world lacks (wave 0), a few small prototype cells each; held-out systems
  are never planned into. The manifest records the coverage table.

Each module imports only what it needs; this package imports none of them, so that
``import gnomon.world`` stays cheap.
"""
