"""DuckDB's string distances in plain Python, for Spark to call as UDFs.

DuckDB's distances compare UTF-8 bytes, and its Jaro-Winkler is not the one of Splink's
similarity jar (commons-text: "abgail monica"/"abigail" is 0.80 in DuckDB and below 0.8 in
the jar). For the same comparison levels as DuckDB, Spark calls these. The module imports
nothing, and is shipped to the executors by value (no install needed on them).
"""

from __future__ import annotations


def jaro_winkler(left: str | None, right: str | None) -> float | None:
    """DuckDB's ``jaro_winkler_similarity``: on bytes, prefix weight 0.1 above 0.7."""
    if left is None or right is None:
        return None
    s1, s2 = left.encode(), right.encode()
    len1, len2 = len(s1), len(s2)
    if not len1 or not len2:
        return 0.0
    window = max(max(len1, len2) // 2 - 1, 0)
    flags1, flags2 = [False] * len1, [False] * len2
    matches = 0
    for i, ch in enumerate(s1):
        for j in range(max(0, i - window), min(len2, i + window + 1)):
            if not flags2[j] and s2[j] == ch:
                flags1[i] = flags2[j] = True
                matches += 1
                break
    if not matches:
        return 0.0
    k = transpositions = 0
    for i in range(len1):
        if flags1[i]:
            while not flags2[k]:
                k += 1
            transpositions += s1[i] != s2[k]
            k += 1
    jaro = (matches / len1 + matches / len2 + (matches - transpositions // 2) / matches) / 3.0
    if jaro > 0.7:
        prefix = 0
        for a, b in zip(s1[:4], s2[:4], strict=False):
            if a != b:
                break
            prefix += 1
        jaro += prefix * 0.1 * (1.0 - jaro)
    return jaro


def levenshtein(left: str | None, right: str | None) -> int | None:
    """DuckDB's ``levenshtein``: edits between the UTF-8 bytes."""
    if left is None or right is None:
        return None
    a, b = left.encode(), right.encode()
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def damerau_levenshtein(left: str | None, right: str | None) -> int | None:
    """DuckDB's ``damerau_levenshtein``: unrestricted (Lowrance-Wagner), on bytes."""
    if left is None or right is None:
        return None
    a, b = left.encode(), right.encode()
    n, m = len(a), len(b)
    big = n + m
    d = [[big] * (m + 2)] + [[big] + [0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i + 1][1] = i
    for j in range(m + 1):
        d[1][j + 1] = j
    last_row: dict[int, int] = {}
    for i in range(1, n + 1):
        last_col = 0
        for j in range(1, m + 1):
            k, col = last_row.get(b[j - 1], 0), last_col
            cost = 0 if a[i - 1] == b[j - 1] else 1
            if not cost:
                last_col = j
            d[i + 1][j + 1] = min(
                d[i][j] + cost,
                d[i + 1][j] + 1,
                d[i][j + 1] + 1,
                d[k][col] + (i - k - 1) + 1 + (j - col - 1),
            )
        last_row[a[i - 1]] = i
    return d[n + 1][m + 1]
