"""The conformance cases of the stages the cuda backend runs (TopK, TopP, MinP,
Temperature, Dist, and their chains), on backend "cuda".

The cases are those of ``tests/test_conformance.py``, imported unchanged: the
``backend`` fixture of ``tests/cuda/conftest.py`` makes them run on cuda (host
logits through ``SamplerChain(...).process``, which copies them to the device).
"""

from test_conformance import (  # noqa: F401
    test_batch_rows_match_single_rows,
    test_llama_default_chain,
    test_min_p,
    test_min_p_ties,
    test_min_p_transformers,
    test_per_row_parameters,
    test_temperature,
    test_temperature_divides_logits,
    test_temperature_greedy_keeps_first_maximum,
    test_top_k,
    test_top_k_counts_unmasked_only,
    test_top_k_min_keep,
    test_top_k_ties_kept,
    test_top_k_transformers_ramp,
    test_top_p,
    test_top_p_mass_tolerance,
    test_top_p_min_keep,
    test_top_p_ties_kept,
    test_top_p_transformers,
)
