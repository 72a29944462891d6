"""The social world (docs/social.md): who knows whom, what users hear and say, how they search.

- :mod:`~recoworld.social.graph`: the friendship graph of a population (from the world's
  friends table, or generated with homophily by taste), its communities and the order that
  keeps them together in shards;
- :mod:`~recoworld.social.awareness`: what each user heard of, fading over days;
- :mod:`~recoworld.social.talk`: the round choice (recommender / social / nothing), posts and
  chats about consumed items, the messages they become;
- :mod:`~recoworld.social.search`: item search (BM25 or content vectors) and the queries users
  type from what they remember and heard;
- :mod:`~recoworld.social.diffusion`: per creator item, who was reached through which
  channel, cascades and their summary.

The round loop that uses them is :mod:`recoworld.study.social_loop`; the executors that run its
shards in lockstep are in :mod:`recoworld.study.rounds`.
"""
