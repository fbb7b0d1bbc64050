"""Tiny models built entirely in code, for tests and examples that must never download anything."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from embedding_studio.models.text import TextEmbeddingModel, quiet_transformers

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
COMMON_WORDS = (
    "the of and to a in is it you that he was for on are with as his they be at one have this from or had by "
    "not word but what some we can out other were all there when up use your how said an each she which do "
    "their time if will way about many then them write would like so these her long make thing see him two has "
    "look more day could go come did number sound no most people my over know water than call first who may "
    "down side been now find any new work part take get place made live where after back little only round man "
    "year came show every good me give our under name very through just form sentence great think say help low "
    "line differ turn cause much mean before move right boy old too same tell does set three want air well also "
    "play small end put home read hand port large spell add even land here must big high such follow act why "
    "ask men change went light kind off need house picture try us again animal point mother world near build "
    "self earth father head stand own page should country found answer school grow study still learn plant "
    "cover food sun four between state keep eye never last let thought city tree cross farm hard start might "
    "story saw far sea draw left late run while press close night real life few north open seem together next "
    "white children begin got walk example ease paper group always music those both mark often letter until "
    "mile river car feet care second book carry took science eat room friend began idea fish mountain stop once "
    "base hear horse cut sure watch color face wood main enough plain girl usual young ready above ever red "
    "list though feel talk bird soon body dog family direct pose leave song measure door product black short "
    "numeral class wind question happen complete ship area half rock order fire south problem piece told knew "
    "pass since top whole king space heard best hour better true during hundred five remember step early hold "
    "west ground interest reach fast verb sing listen six table travel less morning ten simple several vowel "
    "toward war lay against pattern slow center love person money serve appear road map rain rule govern pull "
    "cold notice voice unit power town fine certain fly fall lead cry dark machine note wait plan figure star "
    "box noun field rest correct able pound done beauty drive stood contain front teach week final gave green "
    "oh quick develop ocean warm free minute strong special mind behind clear tail produce fact street inch "
    "multiply nothing course stay wheel full force blue object decide surface deep moon island foot system busy "
    "test record boat common gold possible plane stead dry wonder laugh thousand ago ran check game shape equate "
    "hot miss brought heat snow tire bring yes distant fill east paint language among cat buy shoe shirt dress "
    "phone laptop price cheap red search query item click"
).split()


def build_vocabulary(extra_words: Sequence[str] | None = None) -> list[str]:
    """Special tokens, characters and their `##` continuations, common words, then `extra_words`."""
    vocabulary: list[str] = list(SPECIAL_TOKENS)
    vocabulary += list(_CHARACTERS)
    vocabulary += [f"##{character}" for character in _CHARACTERS]
    vocabulary += list(COMMON_WORDS)
    for word in extra_words or ():
        vocabulary.append(word.lower())
    seen: set[str] = set()
    unique = []
    for token in vocabulary:
        if token not in seen:
            seen.add(token)
            unique.append(token)
    return unique


def build_wordpiece_tokenizer(vocabulary: Sequence[str], model_max_length: int):  # noqa: ANN201 - transformers type
    """A lowercasing BERT WordPiece tokenizer over `vocabulary`; any word falls back to characters."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertTokenizerFast

    token_ids = {token: index for index, token in enumerate(vocabulary)}
    backend = Tokenizer(WordPiece(token_ids, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", token_ids["[CLS]"]), ("[SEP]", token_ids["[SEP]"])],
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    return BertTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def build_tiny_text_model(
    seed: int = 0, dim: int = 32, vocab: Sequence[str] | None = None, max_seq_length: int = 64
) -> TextEmbeddingModel:
    """A 2-layer, 2-head BERT with mean pooling and normalisation; the same seed gives the same weights.

    `vocab` adds words to the built-in vocabulary so a toy data set tokenizes into whole words.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even number of at least 2 (two attention heads), got {dim}")
    quiet_transformers()
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    vocabulary = build_vocabulary(vocab)
    tokenizer = build_wordpiece_tokenizer(vocabulary, model_max_length=max_seq_length)
    config = BertConfig(
        vocab_size=len(vocabulary),
        hidden_size=dim,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=dim * 2,
        max_position_embeddings=max(max_seq_length, 16),
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = BertModel(config, add_pooling_layer=False)
    with tempfile.TemporaryDirectory(prefix="es-tiny-text-") as directory, torch.random.fork_rng(devices=[]):
        encoder.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        # Loading adds BERT's pooler, which the saved encoder has not got and mean pooling never uses: seeded too,
        # so that two models of one seed have the same state, every parameter included.
        torch.manual_seed(seed)
        transformer = Transformer(directory, max_seq_length=max_seq_length)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    tower = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
    return TextEmbeddingModel(tower, base_model=f"tiny-bert-{dim}-seed{seed}")


def tiny_model_directory(directory: Path, seed: int = 0, dim: int = 32) -> Path:
    """Save a tiny model to `directory` (tests that need a model on disk)."""
    build_tiny_text_model(seed=seed, dim=dim).save(directory)
    return directory


def tiny_clip_directory(
    directory: Path, seed: int = 0, vocab: Sequence[str] | None = None, hugging_face_layout: bool = True
) -> Path:
    """Save a tiny CLIP (built from a config in code) to `directory`: in Hugging Face's layout by default, as a
    user's own checkpoint arrives, else as Embedding Studio saves a fine-tuned one."""
    from embedding_studio.models.clip import build_tiny_clip_model

    model = build_tiny_clip_model(seed=seed, vocab=vocab)
    if hugging_face_layout:
        model.save_hugging_face_layout(directory)
    else:
        model.save(directory)
    return directory
