"""Generation: vLLM argument building (vLLM is not installed here), backend choice, the transformers backend."""

import sys

import pytest

from openrs_cli.errors import OpenrsError
from openrs_cli.evaluate import generation as G
from openrs_cli.evaluate import vllm_backend as V


def test_vllm_engine_kwargs_follow_the_paper(tmp_path):
    kw = V.llm_kwargs("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "1793695d", 1234)
    assert kw == {"model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "seed": 1234, "dtype": "bfloat16",
                  "gpu_memory_utilization": 0.8, "tensor_parallel_size": 1, "enable_prefix_caching": True,
                  "revision": "1793695d", "max_model_len": 32768}
    g = tmp_path / "m.gguf"
    g.write_bytes(b"GGUF")
    assert V.llm_kwargs(str(g), None, 1, max_model_len=None)["model"] == str(g.resolve())
    assert "max_model_len" not in V.llm_kwargs("m", None, 1, max_model_len=None)


def test_vllm_sampling_kwargs():
    s = G.Sampling(max_new_tokens=32768, temperature=0.6, top_p=0.95, seed=1234)
    assert V.sampling_kwargs(16, s, 99) == {"n": 16, "temperature": 0.6, "top_p": 0.95, "max_tokens": 32768,
                                            "seed": 99}
    greedy = V.sampling_kwargs(1, G.Sampling(10, 0.0, 0.95, 1), 5)
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0


def test_generation_budget_fits_the_context():
    assert V.cap_max_tokens(32768, 200, 32768) == 32568
    assert V.cap_max_tokens(1000, 200, 32768) == 1000
    assert V.cap_max_tokens(1000, 40000, 32768) == 1
    assert V.cap_max_tokens(1000, 200, None) == 1000


def test_data_parallel_deal_covers_every_item_once():
    shards = V.deal(10, 3)
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(i for s in shards for i in s) == list(range(10))
    assert V.deal(2, 4) == [[0], [1], [], []]


def test_backend_choice_without_vllm_or_gpu(monkeypatch):
    assert "vllm" not in sys.modules
    monkeypatch.setattr(G.importlib.util, "find_spec", lambda name: None)
    assert G.pick_backend("auto") == "transformers"
    with pytest.raises(OpenrsError, match="vLLM is not installed"):
        G.pick_backend("vllm")
    with pytest.raises(OpenrsError, match="valid: auto, transformers, vllm"):
        G.pick_backend("tgi")
    monkeypatch.setattr(G.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(G, "cuda_count", lambda: 2)
    assert G.pick_backend("auto") == "vllm"
    monkeypatch.setattr(G, "cuda_count", lambda: 0)
    assert G.pick_backend("auto") == "transformers"


def test_unit_seed_is_stable_and_distinct():
    assert G.unit_seed(1234, "aime24/aime24-60/0") == G.unit_seed(1234, "aime24/aime24-60/0")
    assert G.unit_seed(1234, "aime24/aime24-60/0") != G.unit_seed(1234, "aime24/aime24-60/1")
    assert G.unit_seed(1, "x") != G.unit_seed(2, "x")


def test_model_source(tmp_path):
    g = tmp_path / "SmolLM2.gguf"
    g.write_bytes(b"GGUF")
    assert G.model_source(str(g)) == (str(tmp_path.resolve()), "SmolLM2.gguf")
    assert G.model_source("org/model") == ("org/model", None)
    with pytest.raises(OpenrsError, match="no such GGUF"):
        G.model_source(str(tmp_path / "missing.gguf"))


@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir):
    return G.TransformersBackend(str(tiny_model_dir))


def test_transformers_backend_renders_chat_template(tiny_backend):
    text = tiny_backend.render([{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_transformers_backend_groups_samples_and_is_seeded(tiny_backend):
    s = G.Sampling(max_new_tokens=12, temperature=0.6, top_p=0.95, seed=0)
    texts = [tiny_backend.render([{"role": "user", "content": q}]) for q in ("1+1?", "2+2?")]
    a = tiny_backend.generate(texts, [3, 1], [[7, 17, 27], [8]], s)
    assert [len(x) for x in a] == [3, 1]
    for c in a[0] + a[1]:
        assert 1 <= c.n_tokens <= 12 and c.finish_reason in ("stop", "length") and isinstance(c.text, str)
        assert c.finish_reason == "stop" or c.n_tokens == 12
    b = tiny_backend.generate(texts, [3, 1], [[7, 17, 27], [8]], s)
    assert a == b  # same seed, same samples
    assert len({c.text for c in a[0]}) > 1  # sampling: the 3 samples of one prompt differ
    greedy = G.Sampling(max_new_tokens=12, temperature=0.0, top_p=0.95, seed=0)
    g1 = tiny_backend.generate(texts[:1], [2], [[1, 2]], greedy)
    g2 = tiny_backend.generate(texts[:1], [2], [[3, 4]], greedy)
    assert g1[0][0] == g1[0][1] == g2[0][0]  # temperature 0 is greedy, seed-independent


def test_transformers_samples_depend_on_their_own_seed_not_the_batch(tiny_backend):
    """The backend seeded once per batch (torch.manual_seed(seeds[0])), so a sample changed with the samples
    beside it while generations.jsonl recorded a seed of its own. Each row now draws from its own generator."""
    s = G.Sampling(max_new_tokens=12, temperature=0.6, top_p=0.95, seed=0)
    texts = [tiny_backend.render([{"role": "user", "content": q}]) for q in ("1+1?", "2+2?", "3+3?")]
    together = tiny_backend.generate(texts, [2, 1, 1], [[5, 6], [7], [8]], s)
    alone = [tiny_backend.generate([texts[1]], [1], [[7]], s)[0][0],
             tiny_backend.generate([texts[0]], [1], [[6]], s)[0][0]]
    assert alone == [together[1][0], together[0][1]]  # the same sample alone, or second in another batch
    assert tiny_backend.generate([texts[1]], [1], [[70]], s)[0][0] != together[1][0]  # its seed decides
    with pytest.raises(ValueError, match="2 samples need 2 seeds"):
        tiny_backend.generate(texts[:1], [2], [[1]], s)


def test_gumbel_max_draws_from_the_tempered_distribution():
    """The per-row sampler is exact: token frequencies over many seeds match softmax(scores)."""
    import torch

    from openrs_cli.evaluate.hf_backend import PerRowGumbel

    scores = torch.log(torch.tensor([[0.5, 0.3, 0.2, 0.0]]))  # the last token filtered (-inf)
    counts = torch.zeros(4)
    for seed in range(4000):
        counts[int(PerRowGumbel([seed])(None, scores.clone()).argmax())] += 1
    freq = counts / counts.sum()
    assert freq[3] == 0 and torch.allclose(freq[:3], torch.tensor([0.5, 0.3, 0.2]), atol=0.03)


def test_public_generate_api(tiny_model_dir):
    calls = []
    out = G.generate(str(tiny_model_dir), [[{"role": "user", "content": "1+1?"}]] * 3, samples=2,
                     max_new_tokens=8, temperature=0.6, top_p=0.95, seed=1, backend="transformers",
                     batch_size=4, on_progress=lambda d, t: calls.append((d, t)))
    assert [len(x) for x in out] == [2, 2, 2]
    assert all(isinstance(c, G.Completion) for x in out for c in x)
    assert calls[-1] == (6, 6)


def test_vllm_worker_start_failure_and_death_are_reported_not_waited_on(monkeypatch):
    import queue

    def boom(kwargs):
        raise MemoryError("CUDA out of memory")

    monkeypatch.setattr(V, "_engine", boom)
    outbox = queue.Queue()
    V._worker({}, queue.Queue(), outbox)  # returns instead of dying silently
    assert outbox.get_nowait() == ("error", "MemoryError: CUDA out of memory")

    class Dead:
        exitcode = -9

        def is_alive(self):
            return False

    from openrs_cli.evaluate import workers

    assert workers.reply(Dead(), queue.Queue(), poll_s=0.01)[0] == "error"  # was: outbox.get() blocking forever
