"""Title-token embeddings pretrained on the catalogue's own titles (``[model] text_pretraining = "ppmi_svd"``).

No external weights: tokens that appear in the same titles get close vectors. Over every item of every category
(content only, no interactions): how many titles hold both tokens → positive pointwise mutual information (with
the context distribution smoothed by the power 0.75, Levy, Goldberg & Dagan 2015) → truncated SVD (scikit-learn)
→ U·√Σ, scaled so its entries spread as those of the embedding layer's default initialiser. The table initialises
the item tower's token embeddings; training then fine-tunes it as usual. Rows without a co-occurrence (padding,
``[UNK]``, tokens never in a title with another one) keep a random initialisation. Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: The ``text_pretraining`` choices: no pretraining, or PPMI + truncated SVD of title co-occurrences.
METHODS = ("none", "ppmi_svd")

#: tf_keras ``Embedding``'s default initialiser is uniform(-0.05, 0.05).
INIT_LIMIT = 0.05

#: Context distribution smoothing of the PMI (0.75 as in word2vec's negative sampling).
SMOOTHING = 0.75

#: Token ids below this are padding (0) and ``[UNK]`` (1): no meaning to learn from.
FIRST_TOKEN = 2


def title_cooccurrence(item_tokens: np.ndarray, n_tokens: int) -> sp.csr_matrix:
    """(n_tokens, n_tokens) counts of the titles that hold both tokens (diagonal 0), from (items, max_tokens) ids."""
    rows = np.repeat(np.arange(item_tokens.shape[0]), item_tokens.shape[1])
    tokens = item_tokens.ravel().astype(np.int64)
    keep = tokens >= FIRST_TOKEN
    present = sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float64), (rows[keep], tokens[keep])), shape=(item_tokens.shape[0], n_tokens)
    )
    present.data[:] = 1.0  # a token twice in a title is there once
    counts = (present.T @ present).tocsr()
    counts.setdiag(0.0)
    counts.eliminate_zeros()
    return counts


def positive_pmi(counts: sp.csr_matrix, smoothing: float = SMOOTHING) -> sp.csr_matrix:
    """max(0, log P(a, b) / (P(a) · P_smoothed(b))) of a symmetric co-occurrence matrix, sparse."""
    total = counts.sum()
    if total <= 0:
        return sp.csr_matrix(counts.shape, dtype=np.float64)
    row = np.asarray(counts.sum(axis=1)).ravel() / total
    context = np.asarray(counts.sum(axis=0)).ravel() ** smoothing
    context /= context.sum()
    coo = counts.tocoo()
    pmi = np.log(coo.data / total) - np.log(row[coo.row]) - np.log(context[coo.col])
    keep = pmi > 0
    return sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=counts.shape)


def pretrained_token_table(item_tokens: np.ndarray, n_rows: int, dim: int, seed: int = 0) -> np.ndarray:
    """The (n_rows, dim) float32 initial token-embedding table learnt from the titles' token ids (see the module
    docstring); ``n_rows`` is the embedding's row count (at least the largest token id + 1)."""
    from sklearn.decomposition import TruncatedSVD

    rng = np.random.default_rng(seed)
    table = rng.uniform(-INIT_LIMIT, INIT_LIMIT, size=(n_rows, dim)).astype(np.float32)
    ppmi = positive_pmi(title_cooccurrence(item_tokens, n_rows))
    known = np.flatnonzero(np.diff(ppmi.indptr) > 0)
    rank = min(dim, len(known) - 1)
    if rank < 1:
        return table
    sub = ppmi[known][:, known]
    svd = TruncatedSVD(n_components=rank, algorithm="arpack", random_state=seed)  # Lanczos: fast for rank ≪ n
    scaled = svd.fit_transform(sub)  # U·Σ
    singular = svd.singular_values_
    vectors = np.zeros((len(known), dim), dtype=np.float64)
    useful = np.flatnonzero(singular > singular.max() * 1e-9)  # components of a (numerically) zero value: none
    vectors[:, useful] = scaled[:, useful] / np.sqrt(singular[useful])  # U·√Σ
    rms = np.sqrt(np.mean(vectors**2))
    if rms > 0:
        table[known] = vectors * (INIT_LIMIT / np.sqrt(3.0) / rms)  # the uniform initialiser's standard deviation
    return table
