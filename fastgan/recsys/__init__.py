"""Personalized recommendation with a GAN: CFGAN (Chae et al., CIKM 2018) on fastgan's
fused blocks, the TopPop and EASE baselines, data loading and the evaluation protocol.

    from fastgan.recsys import load_interactions, split_per_user, CFGAN, EASE
    matrix = load_interactions("ml-100k").matrix()       # needs recbole installed
    train, test = split_per_user(matrix, 0.2, seed=0)
    scores = CFGAN().fit(train).score(train)             # rank each user's unseen items

`python -m fastgan.recsys` prints the comparison table over seeds.
"""

from .baselines import EASE, TopPop
from .cfgan import CFGAN, CFGANConfig, Discriminator, Generator
from .data import Interactions, load_interactions, load_user_features, movielens_100k_dir
from .protocol import evaluate_seed, format_table, summarize
from .split import split_per_user

__all__ = [
    "CFGAN",
    "CFGANConfig",
    "Discriminator",
    "EASE",
    "Generator",
    "Interactions",
    "TopPop",
    "evaluate_seed",
    "format_table",
    "load_interactions",
    "load_user_features",
    "movielens_100k_dir",
    "split_per_user",
    "summarize",
]
