"""MultimodalGPT against the behaviour Transformers checks for every in-tree model, in the manner of transformers'
`tests/models/llava/test_modeling_llava.py`: a model tester with tiny configs, and one test class per tower/fusion
combination running the checks of `ModelTesterMixin` and `GenerationTesterMixin` that concern this model (tuple
outputs, cache continuation, assisted and prompt-lookup decoding, gradient checkpointing, `inputs_embeds`, the media
feature outputs, eager-vs-SDPA, torch.export, full-graph compilation of a decoding step with a static cache)."""

import copy

import pytest
import torch
from transformers import StaticCache
from transformers.modeling_outputs import BaseModelOutputWithPooling

from multimodal_gpt import MultimodalGPTForConditionalGeneration, MultimodalGPTModel
from multimodal_gpt.cache_multimodal_gpt import MultimodalGPTCache
from tests.tiny_models import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID, audio_input, image_input, open_gates, tiny_config

GREEDY = dict(do_sample=False, pad_token_id=0, eos_token_id=None, return_dict_in_generate=True, output_scores=True)


class MultimodalGPTModelTester:
    """Tiny configs (GPT-2 hidden 32, 2 layers, vocab 99; towers hidden 32, 2 layers; 8-pixel images, 0.1 s clips) and
    a batch of two samples: the first with an image and/or a clip, the second with a longer text and no clip."""

    def __init__(self, *, vision: str | None, audio: str | None, fusion: str, batch_size: int = 2):
        self.vision, self.audio, self.fusion, self.batch_size = vision, audio, fusion, batch_size
        self.audio_length = 60 if audio == "whisper" else 1600  # mel frames of a 1 s window, or samples

    def get_config(self):
        return tiny_config(vision=self.vision, audio=self.audio, fusion=self.fusion)

    def build(self, model_class=MultimodalGPTForConditionalGeneration, seed: int = 0):
        torch.manual_seed(seed)
        model = model_class(self.get_config()).eval()
        open_gates(model)  # so that cross-attention media change the output
        return model

    def prepare_inputs(self, config, batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """Left-padded prompts: every sample has the image (if any); the first also has the clip (if any)."""
        batch_size = batch_size or self.batch_size
        rows, media = [], {}
        if self.vision:
            media["pixel_values"] = image_input(batch_size, seed=1)
        if self.audio:
            media.update(audio_input(self._audio_model_stub(config), self.audio_length, seed=2))
        for row in range(batch_size):
            ids = [3 + row, 4]
            if self.vision:
                ids += [IMAGE_TOKEN_ID] * config.num_image_tokens() + [5]
            if self.audio and row == 0:
                ids += [AUDIO_TOKEN_ID] * config.num_audio_tokens(self.audio_length) + [6]
            rows.append(ids + [7 + row] * (row + 1))
        longest = max(map(len, rows))
        input_ids = torch.tensor([[0] * (longest - len(row)) + row for row in rows])
        attention_mask = torch.tensor([[0] * (longest - len(row)) + [1] * len(row) for row in rows])
        return dict(input_ids=input_ids, attention_mask=attention_mask, **media)

    @staticmethod
    def _audio_model_stub(config):
        return type("Stub", (), {"config": config})()


class MultimodalGPTModelTestMixin:
    model_tester: MultimodalGPTModelTester

    @pytest.fixture
    def model(self):
        return self.model_tester.build()

    @pytest.fixture
    def inputs(self, model):
        return self.model_tester.prepare_inputs(model.config)

    # ----- 1. tuple outputs -------------------------------------------------------------------------------------

    @pytest.mark.parametrize("model_class", [MultimodalGPTModel, MultimodalGPTForConditionalGeneration])
    def test_return_dict_false_gives_the_same_values_as_a_tuple(self, model_class):
        model = self.model_tester.build(model_class)
        inputs = self.model_tester.prepare_inputs(model.config)
        with torch.no_grad():
            as_dict = model(**inputs, use_cache=False)
            as_tuple = model(**inputs, use_cache=False, return_dict=False)
        assert isinstance(as_tuple, tuple)
        first = as_dict.logits if model_class is MultimodalGPTForConditionalGeneration else as_dict.last_hidden_state
        torch.testing.assert_close(as_tuple[0], first, rtol=0, atol=0)
        assert len(as_tuple) == len(as_dict.to_tuple())

    # ----- 2. cache: continuing a generation, media keys and values once ------------------------------------------

    @pytest.mark.parametrize("media_again", [True, False])
    def test_continuing_from_a_returned_cache_equals_one_uninterrupted_call(self, model, inputs, media_again):
        """GenerationTesterMixin.test_generate_continue_from_past_key_values: 3 + 1 tokens equal 4 at once, with the
        media given again (as transformers' test does) or not at all (they live in the cache)."""
        whole = model.generate(**inputs, max_new_tokens=4, **GREEDY)
        first = model.generate(**inputs, max_new_tokens=3, **GREEDY)
        continued_inputs = dict(inputs) if media_again else {}
        continued_inputs["input_ids"] = first.sequences
        continued_inputs["attention_mask"] = torch.nn.functional.pad(inputs["attention_mask"], (0, 3), value=1)
        second = model.generate(**continued_inputs, cache=first.cache, max_new_tokens=1, **GREEDY)
        assert second.sequences.tolist() == whole.sequences.tolist()
        for expected, actual in zip(whole.scores, first.scores + second.scores):
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)

    def test_media_are_encoded_and_projected_once_per_generation(self, model, inputs):
        """The towers run once, at prefill; so does the projection of cross-attention media into the keys and
        values of every gated layer (VisionEncoderDecoder caches them the same way), not once per decoding step."""
        modules = [model.vision_tower, model.audio_tower, model.model.cross_attention_key_values]
        calls = {index: 0 for index, module in enumerate(modules) if module is not None}
        for index in calls:
            modules[index].register_forward_hook(lambda *args, index=index: calls.__setitem__(index, calls[index] + 1))
        model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, pad_token_id=0)
        assert set(calls.values()) == {1}, calls

    def test_static_cache_generation_equals_dynamic(self, model, inputs):
        dynamic = model.generate(**inputs, max_new_tokens=4, **GREEDY)
        static = model.generate(**inputs, max_new_tokens=4, cache_implementation="static", **GREEDY)
        assert static.sequences.tolist() == dynamic.sequences.tolist()

    # ----- 3. assisted and prompt-lookup decoding -------------------------------------------------------------------

    def test_assisted_decoding_equals_greedy_search(self, model):
        """GenerationTesterMixin.test_assisted_decoding_matches_greedy_search (batch size 1, as transformers asks),
        with another model of the same kind as the assistant: it gets the media too."""
        single = self.model_tester.prepare_inputs(model.config, batch_size=1)
        assistant_model = self.model_tester.build(seed=1)
        greedy = model.generate(**single, max_new_tokens=6, **GREEDY)
        assisted = model.generate(**single, max_new_tokens=6, assistant_model=assistant_model, **GREEDY)
        assert assisted.sequences.tolist() == greedy.sequences.tolist()

    def test_prompt_lookup_decoding_equals_greedy_search(self, model):
        single = self.model_tester.prepare_inputs(model.config, batch_size=1)
        greedy = model.generate(**single, max_new_tokens=6, **GREEDY)
        lookup = model.generate(**single, max_new_tokens=6, prompt_lookup_num_tokens=3, **GREEDY)
        assert lookup.sequences.tolist() == greedy.sequences.tolist()

    # ----- 4. gradient checkpointing ------------------------------------------------------------------------------

    @pytest.mark.parametrize(("use_reentrant", "frozen_towers"), [(True, False), (True, True), (False, False)])
    def test_gradient_checkpointing_gives_the_same_gradients(self, model, inputs, use_reentrant, frozen_towers):
        model.train()
        if frozen_towers:
            model.freeze_towers()
        labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
        model(**inputs, labels=labels).loss.backward()
        expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        model.activation_checkpointing_enable({"use_reentrant": use_reentrant})
        model(**inputs, labels=labels).loss.backward()
        actual = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
        assert actual.keys() == expected.keys()
        for name, grad in expected.items():
            torch.testing.assert_close(actual[name], grad, rtol=1e-5, atol=1e-6, msg=name)

    # ----- 5. inputs_embeds with media ------------------------------------------------------------------------------

    def test_inputs_embeds_with_media_match_input_ids(self, model, inputs):
        """ModelTesterMixin.test_inputs_embeds_matches_input_ids, media included: the placeholders are found from
        their embeddings (LLaVA's way)."""
        embeds_inputs = dict(inputs)
        embeds_inputs["inputs_embeds"] = model.get_input_embeddings()(embeds_inputs.pop("input_ids"))
        with torch.no_grad():
            from_ids = model(**inputs, use_cache=False).logits
            from_embeds = model(**embeds_inputs, use_cache=False).logits
        torch.testing.assert_close(from_embeds, from_ids, rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("num_beams", [1, 2])
    def test_generate_from_inputs_embeds_with_media(self, model, inputs, num_beams):
        embeds_inputs = dict(inputs)
        embeds_inputs["inputs_embeds"] = model.get_input_embeddings()(embeds_inputs.pop("input_ids"))
        settings = dict(GREEDY, max_new_tokens=4, num_beams=num_beams)
        from_ids = model.generate(**inputs, **settings).sequences[:, inputs["input_ids"].shape[1] :]
        from_embeds = model.generate(**embeds_inputs, **settings).sequences  # only the new tokens
        assert from_embeds.tolist() == from_ids.tolist()

    # ----- 6. media features: the 5.x output classes ------------------------------------------------------------

    def test_media_features_follow_the_5x_contract(self, model, inputs):
        outputs = model(**inputs, use_cache=False)
        for name, getter, media_keys in (
            ("image", model.get_image_features, ("pixel_values",)),
            (
                "audio",
                model.get_audio_features,
                ("input_features", "input_features_mask", "input_values", "input_values_mask"),
            ),
        ):
            media = {key: inputs[key] for key in media_keys if key in inputs}
            if not media:
                assert getattr(outputs, f"{name}_outputs") is None
                continue
            features = getter(**media, output_hidden_states=True)
            assert isinstance(features, BaseModelOutputWithPooling)
            assert features.pooler_output.shape[:2] == features.pooler_output_mask.shape
            assert features.pooler_output.shape[-1] == model.config.text_config.hidden_size
            assert features.hidden_states is not None and features.last_hidden_state is not None
            as_tuple = getter(**media, return_dict=False)
            assert isinstance(as_tuple, tuple)
            torch.testing.assert_close(as_tuple[1], features.pooler_output)
            torch.testing.assert_close(getattr(outputs, f"{name}_outputs").pooler_output, features.pooler_output)

    # ----- eager vs SDPA, hidden states -----------------------------------------------------------------------

    def test_eager_matches_sdpa_with_media(self, model, inputs):
        eager = type(model)._from_config(model.config, attn_implementation="eager").eval()
        eager.load_state_dict(model.state_dict())
        assert eager.model.language_model.config._attn_implementation == "eager"
        with torch.no_grad():
            torch.testing.assert_close(
                eager(**inputs, use_cache=False).logits, model(**inputs, use_cache=False).logits, rtol=1e-4, atol=1e-5
            )

    def test_hidden_states_output(self, model, inputs):
        outputs = model(**inputs, output_hidden_states=True, use_cache=False)
        assert len(outputs.hidden_states) == model.config.text_config.n_layer + 1
        assert outputs.hidden_states[-1].shape == (*inputs["input_ids"].shape, model.config.text_config.n_embd)

    # ----- 7. torch.export and torch.compile ----------------------------------------------------------------------

    def test_torch_export(self, model, inputs):
        """torch.export traces the model with its media (no data-dependent Python ints or lists), and the exported
        program computes the same logits."""
        exported = torch.export.export(model, args=(), kwargs=dict(inputs, use_cache=False), strict=False)
        torch.testing.assert_close(
            exported.module()(**inputs, use_cache=False).logits, model(**inputs, use_cache=False).logits
        )

    def test_decoding_step_compiles_as_one_graph_with_a_static_cache(self, model, inputs):
        """`_can_compile_fullgraph`: a decoding step (one new token, static cache, media in the cache or spliced)
        compiles with `fullgraph=True` and gives the eager step's logits."""
        assert type(model)._can_compile_fullgraph
        length = inputs["input_ids"].shape[1]
        cache = StaticCache(config=model.config.text_config, max_cache_len=length + 4)
        with torch.no_grad():
            prefill = model(**inputs, cache=cache)
            next_tokens = prefill.logits[:, -1:].argmax(-1)
            step_inputs = dict(
                input_ids=next_tokens,
                attention_mask=torch.nn.functional.pad(inputs["attention_mask"], (0, 1), value=1),
                position_ids=inputs["attention_mask"].sum(-1, keepdim=True),
            )
            eager_cache = copy.deepcopy(prefill.cache)
            expected = model(**step_inputs, cache=eager_cache).logits
            torch._dynamo.reset()
            compiled = torch.compile(model, fullgraph=True, backend="eager")
            actual = compiled(**step_inputs, cache=prefill.cache).logits
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


class TestClipMlp(MultimodalGPTModelTestMixin):
    model_tester = MultimodalGPTModelTester(vision="clip", audio=None, fusion="mlp")


class TestSiglipResampler(MultimodalGPTModelTestMixin):
    model_tester = MultimodalGPTModelTester(vision="siglip", audio=None, fusion="resampler")


class TestWav2vec2Linear(MultimodalGPTModelTestMixin):
    model_tester = MultimodalGPTModelTester(vision=None, audio="wav2vec2", fusion="linear")


class TestWhisperCrossAttention(MultimodalGPTModelTestMixin):
    model_tester = MultimodalGPTModelTester(vision=None, audio="whisper", fusion="cross_attention")


class TestClipHubertCrossAttention(MultimodalGPTModelTestMixin):
    model_tester = MultimodalGPTModelTester(vision="clip", audio="hubert", fusion="cross_attention")


class TestVitWhisperMixedFusions(MultimodalGPTModelTestMixin):
    model_tester = MultimodalGPTModelTester(
        vision="vit", audio="whisper", fusion={"vision": "cross_attention", "audio": "resampler"}
    )


def test_the_cache_carries_the_media_through_beam_reordering():
    """MultimodalGPTCache: reordering, repeating and selecting rows move the media keys and values with them."""
    model = MultimodalGPTModelTester(vision="clip", audio=None, fusion="cross_attention").build()
    tester = MultimodalGPTModelTester(vision="clip", audio=None, fusion="cross_attention")
    inputs = tester.prepare_inputs(model.config)
    cache = model(**inputs).cache
    assert isinstance(cache, MultimodalGPTCache) and cache.has_media
    media = cache.media_key_values.clone()
    cache.reorder_cache(torch.tensor([1, 0]))
    torch.testing.assert_close(cache.media_key_values, media.flip(0))
    cache.batch_repeat_interleave(2)
    assert cache.media_key_values.shape[0] == cache.media_mask.shape[0] == 4
    cache.batch_select_indices(torch.tensor([0]))
    torch.testing.assert_close(cache.media_key_values[0], media[1])
