"""Static checks of the Ray cluster launcher config (cluster/) and the KubeRay manifests (k8s/).

No cluster, no network: every YAML document under cluster/ and k8s/ is loaded and checked by
plain functions that return error strings naming the file, the object and the field. The real
manifests must produce none; broken copies must produce the specific error (each check is shown
to fail at least once below).

What is checked:
- launcher config: cluster_name, max_workers, provider.type, available_node_types (node_config,
  resources, max_workers, min_workers <= max_workers), head_node_type among them, a head that
  offers CPU 0, setup commands that install the project, `ray start` commands; optionally
  against Ray's own JSON schema;
- runtime envs (cluster/runtime_env.yaml and every RayJob's runtimeEnvYAML): working_dir,
  excludes with runs/ and .venv/, pip = pyproject's dependencies, RECOWORLD_CACHE;
- RayCluster / rayClusterSpec: apiVersion ray.io/v1, rayVersion, headGroupSpec.rayStartParams
  (strings only, num-cpus "0") and its containers; each worker group's groupName,
  minReplicas <= replicas <= maxReplicas, rayStartParams, template; custom resources in
  rayStartParams JSON; nvidia.com/gpu limits = num-gpus = recoworld_llm; recoworld_shard slots
  <= CPUs; every pod mounts a ReadWriteMany PVC of k8s/ at /mnt/runs;
- RayJob: entrypoint, exactly one of rayClusterSpec / clusterSelector (naming a RayCluster of
  k8s/), submissionMode, ttlSecondsAfterFinished only with shutdownAfterJobFinishes;
- entrypoints: `python jobs/X.py FILE.toml ... --out DIR`: the script and the study / sweep files
  exist, studies decode with recoworld.config.load_study (sweeps with recoworld.sweep.load_sweep
  when that exists), DIR is shared storage on every pod of the cluster that runs the job;
- RayCronJob and CronJob: a valid 5-field schedule and a jobTemplate; a CronJob that runs
  `kubectl create` has a ServiceAccount bound to a Role that may create rayjobs, and the RayJob it
  creates equals the RayCronJob's jobTemplate;
- custom Ray resource names (launcher resources, rayStartParams) are keys of
  recoworld.config.CLUSTER_RESOURCES; CPU, GPU, memory, object_store_memory are standard;
- one Ray version across launcher images, rayVersion, container images and k8s/Dockerfile,
  at least pyproject's `ray` extra;
- the paths docs/cluster.md names exist.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml  # pyyaml: in the test extra of pyproject.toml

from recoworld.config import CLUSTER_RESOURCES, load_study
from recoworld.errors import RecoWorldError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster


def _load_all(text: str) -> list:
    return list(yaml.load_all(text, Loader=_Loader))  # noqa: S506 - a safe loader


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader


ROOT = Path(__file__).resolve().parents[1]
MANIFEST_DIRS = ("cluster", "k8s")
EXPECTED_FILES = {
    "cluster/ray-cluster.yaml",
    "cluster/runtime_env.yaml",
    "k8s/pvc.yaml",
    "k8s/raycluster.yaml",
    "k8s/rayjob-whatif.yaml",
    "k8s/nightly-sweep.yaml",
    "k8s/nightly-sweep-cronjob.yaml",
    "k8s/Dockerfile",
}
STANDARD_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}
SHARED_RUNS = "/mnt/runs"
API_VERSIONS = {
    "RayCluster": "ray.io/v1",
    "RayJob": "ray.io/v1",
    "RayCronJob": "ray.io/v1",
    "CronJob": "batch/v1",
    "ServiceAccount": "v1",
    "ConfigMap": "v1",
    "PersistentVolumeClaim": "v1",
    "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1",
}
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
VERSION_RE = re.compile(r"^(\d+\.\d+\.\d+)(?:-|$)")


# --------------------------------------------------------------------------------------------
# Loading


@dataclass
class Doc:
    path: str  # relative to the repository, posix
    index: int  # position in a multi-document file
    body: Any

    @property
    def where(self) -> str:
        return self.path if self.index == 0 else f"{self.path} (document {self.index + 1})"


@dataclass
class Manifests:
    docs: list[Doc]
    dockerfiles: dict[str, str] = field(default_factory=dict)


def load_manifests(root: Path = ROOT) -> Manifests:
    """Every YAML document under cluster/ and k8s/, and the Dockerfiles there."""
    docs: list[Doc] = []
    dockerfiles: dict[str, str] = {}
    for d in MANIFEST_DIRS:
        for p in sorted((root / d).rglob("*")):
            if not p.is_file():
                continue
            rel = p.relative_to(root).as_posix()
            if p.suffix in (".yaml", ".yml"):
                bodies = [b for b in _load_all(p.read_text()) if b is not None]
                docs += [Doc(rel, i, b) for i, b in enumerate(bodies)]
            elif p.name == "Dockerfile" or p.name.endswith(".Dockerfile"):
                dockerfiles[rel] = p.read_text()
    return Manifests(docs, dockerfiles)


# --------------------------------------------------------------------------------------------
# Small parsers (each tested on its own below)

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


def cron_error(expr: object) -> str | None:
    """None if ``expr`` is a valid 5-field cron schedule, else what is wrong with it."""
    if not isinstance(expr, str):
        return f"expected a cron string, got {expr!r}"
    parts = expr.split()
    if len(parts) != 5:
        return (
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)} "
            f"in {expr!r}"
        )
    for part, (name, lo, hi, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            base, slash, step = item.partition("/")
            if slash and not (step.isdigit() and int(step) > 0):
                return f"{name}: step {step!r} is not a positive integer in {expr!r}"
            if base == "*":
                continue
            bounds = base.split("-")
            if len(bounds) > 2 or not all(bounds):
                return f"{name}: {item!r} is not a value, a range or '*' in {expr!r}"
            values = []
            for b in bounds:
                v = names.get(b.upper()) if not b.isdigit() else int(b)
                if v is None or not lo <= v <= hi:
                    return f"{name}: {b!r} is outside {lo}-{hi} in {expr!r}"
                values.append(v)
            if len(values) == 2 and values[0] > values[1]:
                return f"{name}: range {base!r} runs backwards in {expr!r}"
    return None


def parse_ray_resources(value: object) -> dict[str, float]:
    """The custom resources of a rayStartParams ``resources`` value.

    KubeRay documents the quoted form ``'"{\\"Custom1\\": 1}"'`` (the quotes and backslashes are
    part of the string); a bare JSON object is accepted too. Raises ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string holding a JSON object, got {value!r}")
    s = value.strip()
    if len(s) >= 2 and s[0] == s[-1] == '"':
        s = s[1:-1].replace('\\"', '"')
    try:
        parsed = json.loads(s)
    except json.JSONDecodeError as e:
        raise ValueError(f"not a JSON object: {value!r} ({e.msg})") from None
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        for k, v in parsed.items()
    ):
        raise ValueError(f"expected a JSON object of name: number, got {value!r}")
    return parsed


def image_ray_version(image: str) -> str | None:
    """The Ray version an image tag starts with (``rayproject/ray:2.60.0-py311-gpu`` -> 2.60.0)."""
    name = image.rsplit("/", 1)[-1]
    if ":" not in name:
        return None
    m = VERSION_RE.match(name.split(":", 1)[1])
    return m.group(1) if m else None


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _num(x: object) -> float | None:
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _norm_exclude(p: str) -> str:
    return p.strip().strip("/")


# --------------------------------------------------------------------------------------------
# The checker


class Checker:
    """Collects errors over one set of manifests; ``run()`` returns them."""

    def __init__(self, manifests: Manifests, root: Path = ROOT) -> None:
        self.m = manifests
        self.root = root
        self.errors: list[str] = []
        self.versions: list[tuple[str, str]] = []  # (where, Ray version)
        self.objects: dict[str, dict[str, tuple[Doc, dict]]] = {}  # kind -> name -> (doc, body)
        self.embedded_rayjobs: dict[str, tuple[str, dict]] = {}  # ConfigMap name -> (where, spec)
        self.deps = pyproject()["project"]["dependencies"]

    # -- helpers

    def err(self, where: str, fld: str, msg: str) -> None:
        self.errors.append(f"{where}: {fld}: {msg}" if fld else f"{where}: {msg}")

    def need(self, obj: object, key: str, where: str, fld: str, typ: type | tuple = object) -> Any:
        """obj[key] if present and of type ``typ``, else an error and None."""
        path = f"{fld}.{key}" if fld else key
        if not isinstance(obj, dict) or key not in obj:
            self.err(where, path, "missing")
            return None
        v = obj[key]
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            names = " or ".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))
            self.err(where, path, f"expected {names}, got {v!r}")
            return None
        return v

    def custom_resources(self, where: str, fld: str, names: Iterable[str]) -> None:
        for n in names:
            if n not in STANDARD_RESOURCES and n not in CLUSTER_RESOURCES:
                self.err(
                    where,
                    fld,
                    f"unknown custom resource {n!r}; known: {sorted(CLUSTER_RESOURCES)} "
                    "(recoworld.config.CLUSTER_RESOURCES) and the standard CPU, GPU, memory",
                )

    def slots(
        self, where: str, fld: str, res: dict, cpus: float | None, gpus: float | None
    ) -> None:
        """recoworld_shard slots need a CPU each; recoworld_llm slots are one per GPU."""
        if "recoworld_shard" in res:
            if cpus is None:
                self.err(where, fld, "offers recoworld_shard but no explicit CPU count")
            elif res["recoworld_shard"] > cpus:
                self.err(
                    where,
                    fld,
                    f"recoworld_shard {res['recoworld_shard']} > CPUs {cpus:g}: each shard actor "
                    "also reserves a CPU",
                )
        if res.get("recoworld_llm", 0) != (gpus or 0):
            self.err(
                where,
                fld,
                f"recoworld_llm {res.get('recoworld_llm', 0)} != GPUs {gpus or 0:g}: one LLM "
                "replica slot per GPU",
            )

    # -- entry

    def run(self) -> list[str]:
        for doc in self.m.docs:
            body = doc.body
            if isinstance(body, dict) and "kind" in body:
                name = (body.get("metadata") or {}).get("name")
                self.objects.setdefault(body["kind"], {})[str(name)] = (doc, body)
        for doc in self.m.docs:
            self.check_doc(doc)
        for path, text in self.m.dockerfiles.items():
            self.check_dockerfile(path, text)
        self.check_versions()
        return self.errors

    def check_doc(self, doc: Doc) -> None:
        b = doc.body
        if not isinstance(b, dict):
            self.err(doc.where, "", f"expected a mapping, got {type(b).__name__}")
        elif "kind" in b:
            self.check_k8s(doc.where, b)
        elif doc.path.startswith("cluster/") and ("provider" in b or "available_node_types" in b):
            self.check_launcher(doc.where, b)
        elif "working_dir" in b or Path(doc.path).name.startswith("runtime_env"):
            self.check_runtime_env(doc.where, "", b, require_pip=True)
        else:
            self.err(
                doc.where, "", "neither a launcher config, a runtime env nor a Kubernetes object"
            )

    # -- the cluster launcher

    def check_launcher(self, where: str, c: dict) -> None:
        self.need(c, "cluster_name", where, "", str)
        max_workers = self.need(c, "max_workers", where, "", int)
        provider = self.need(c, "provider", where, "", dict)
        if provider is not None:
            self.need(provider, "type", where, "provider", str)
        types = self.need(c, "available_node_types", where, "", dict) or {}
        head = self.need(c, "head_node_type", where, "", str)
        if head is not None and types and head not in types:
            self.err(
                where,
                "head_node_type",
                f"{head!r} is not among available_node_types {sorted(types)}",
            )
        min_total = 0
        for name, t in types.items():
            fld = f"available_node_types.{name}"
            if not isinstance(t, dict):
                self.err(where, fld, f"expected a mapping, got {t!r}")
                continue
            self.need(t, "node_config", where, fld, dict)
            res = self.need(t, "resources", where, fld, dict)
            tmax = self.need(t, "max_workers", where, fld, int)
            tmin = t.get("min_workers", 0)
            if not isinstance(tmin, int) or tmin < 0:
                self.err(where, f"{fld}.min_workers", f"expected an integer >= 0, got {tmin!r}")
            elif tmax is not None and tmin > tmax:
                self.err(where, f"{fld}.min_workers", f"{tmin} > max_workers {tmax}")
            elif name != head:
                min_total += tmin
            if res is None:
                continue
            self.custom_resources(where, f"{fld}.resources", res)
            if name == head and res.get("CPU") != 0:
                self.err(
                    where,
                    f"{fld}.resources.CPU",
                    f"the head must offer CPU 0 (nothing scheduled on it), got {res.get('CPU')!r}",
                )
            if name != head:
                self.slots(
                    where, f"{fld}.resources", res, _num(res.get("CPU")), _num(res.get("GPU"))
                )
            docker = t.get("docker") or {}
            if docker.get("worker_image"):
                self.versions.append(
                    (f"{where}: {fld}.docker.worker_image", docker["worker_image"])
                )
        if isinstance(max_workers, int) and max_workers < max(min_total, 1):
            self.err(
                where,
                "max_workers",
                f"{max_workers} < the node types' min_workers ({min_total}) or 1",
            )
        docker = c.get("docker") or {}
        for key in ("image", "head_image", "worker_image"):
            if docker.get(key):
                self.versions.append((f"{where}: docker.{key}", docker[key]))
        setup = [
            *c.get("setup_commands", []),
            *c.get("head_setup_commands", []),
            *c.get("worker_setup_commands", []),
        ]
        if not any("pip install" in s and "recoworld" in s for s in setup):
            self.err(
                where,
                "setup_commands",
                "no command installs the project (pip install ... recoworld)",
            )
        if not any("ray start --head" in s for s in c.get("head_start_ray_commands", [])):
            self.err(where, "head_start_ray_commands", "no `ray start --head`")
        if not any("ray start --address" in s for s in c.get("worker_start_ray_commands", [])):
            self.err(where, "worker_start_ray_commands", "no `ray start --address`")

    # -- runtime envs

    def check_runtime_env(self, where: str, fld: str, env: object, *, require_pip: bool) -> None:
        p = f"{fld}." if fld else ""
        if not isinstance(env, dict):
            self.err(where, fld or "runtime env", f"expected a mapping, got {env!r}")
            return
        self.need(env, "working_dir", where, fld, str)
        excludes = self.need(env, "excludes", where, fld, list) or []
        have = {_norm_exclude(str(e)) for e in excludes}
        for must in ("runs", ".venv"):
            if excludes and must not in have:
                self.err(
                    where,
                    f"{p}excludes",
                    f"does not exclude {must}/ (uploaded with every job otherwise)",
                )
        pip = env.get("pip")
        if pip is None and require_pip:
            self.err(where, f"{p}pip", "missing: list pyproject.toml's dependencies")
        elif pip is not None and (
            not isinstance(pip, list) or sorted(map(str, pip)) != sorted(self.deps)
        ):
            missing = sorted(set(self.deps) - set(map(str, pip or [])))
            extra = sorted(set(map(str, pip or [])) - set(self.deps))
            self.err(
                where,
                f"{p}pip",
                f"differs from pyproject.toml's dependencies: missing {missing}, extra {extra}",
            )
        env_vars = self.need(env, "env_vars", where, fld, dict) or {}
        for k, v in env_vars.items():
            if not isinstance(v, str):
                self.err(where, f"{p}env_vars.{k}", f"Ray needs string values, got {v!r}")
        if env_vars and "RECOWORLD_CACHE" not in env_vars:
            self.err(
                where,
                f"{p}env_vars.RECOWORLD_CACHE",
                "missing: every node must find the same data cache",
            )

    # -- Kubernetes objects

    def check_k8s(self, where: str, b: dict) -> None:
        kind = b["kind"]
        meta = b.get("metadata") or {}
        label = f"{where}: {kind} {meta.get('name') or meta.get('generateName') or '?'}"
        if kind not in API_VERSIONS:
            self.err(
                label, "kind", f"not one this test knows ({sorted(API_VERSIONS)}); add its checks"
            )
            return
        if b.get("apiVersion") != API_VERSIONS[kind]:
            self.err(
                label, "apiVersion", f"expected {API_VERSIONS[kind]}, got {b.get('apiVersion')!r}"
            )
        if not (meta.get("name") or meta.get("generateName")):
            self.err(label, "metadata.name", "missing")
        spec = b.get("spec")
        match kind:
            case "RayCluster":
                if self.need(b, "spec", label, "", dict) is not None:
                    self.check_cluster_spec(label, "spec", spec)
            case "RayJob":
                if self.need(b, "spec", label, "", dict) is not None:
                    self.check_job_spec(label, "spec", spec)
            case "RayCronJob":
                if self.need(b, "spec", label, "", dict) is not None:
                    self.check_schedule(label, "spec.schedule", spec.get("schedule"))
                    tmpl = self.need(spec, "jobTemplate", label, "spec", dict)
                    if tmpl is not None:
                        self.check_job_spec(label, "spec.jobTemplate", tmpl)
            case "CronJob":
                if self.need(b, "spec", label, "", dict) is not None:
                    self.check_cronjob(label, spec)
            case "ConfigMap":
                self.check_configmap(label, b)
            case "PersistentVolumeClaim":
                modes = (spec or {}).get("accessModes") or []
                if "ReadWriteMany" not in modes:
                    self.err(
                        label,
                        "spec.accessModes",
                        f"expected ReadWriteMany (every Ray pod mounts it), got {modes}",
                    )
                if not ((spec or {}).get("resources") or {}).get("requests", {}).get("storage"):
                    self.err(label, "spec.resources.requests.storage", "missing")
            case "Role":
                for i, r in enumerate(b.get("rules") or []):
                    for key in ("apiGroups", "resources", "verbs"):
                        self.need(r, key, label, f"rules[{i}]", list)
            case "RoleBinding":
                ref = b.get("roleRef") or {}
                if ref.get("kind") == "Role" and ref.get("name") not in self.objects.get(
                    "Role", {}
                ):
                    self.err(
                        label,
                        "roleRef.name",
                        f"no Role {ref.get('name')!r} in {', '.join(MANIFEST_DIRS)}/",
                    )
                for i, s in enumerate(b.get("subjects") or []):
                    if s.get("kind") == "ServiceAccount" and s.get("name") not in self.objects.get(
                        "ServiceAccount", {}
                    ):
                        self.err(
                            label, f"subjects[{i}].name", f"no ServiceAccount {s.get('name')!r}"
                        )

    def check_schedule(self, where: str, fld: str, schedule: object) -> None:
        if (e := cron_error(schedule)) is not None:
            self.err(where, fld, e)

    def pod_shared_mounts(self, where: str, fld: str, pod: dict) -> set[str]:
        """Mount paths of the first container backed by a ReadWriteMany PVC of k8s/."""
        volumes = {v.get("name"): v for v in pod.get("volumes") or []}
        containers = pod.get("containers") or [{}]
        shared: set[str] = set()
        for i, vm in enumerate(containers[0].get("volumeMounts") or []):
            vol = volumes.get(vm.get("name"))
            if vol is None:
                self.err(
                    where,
                    f"{fld}.containers[0].volumeMounts[{i}].name",
                    f"no volume {vm.get('name')!r} in the pod",
                )
                continue
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is None:
                continue
            if claim not in self.objects.get("PersistentVolumeClaim", {}):
                self.err(
                    where,
                    f"{fld}.volumes.{vol['name']}.persistentVolumeClaim.claimName",
                    f"no PersistentVolumeClaim {claim!r} in k8s/",
                )
                continue
            _, pvc = self.objects["PersistentVolumeClaim"][claim]
            if "ReadWriteMany" in ((pvc.get("spec") or {}).get("accessModes") or []):
                shared.add(vm.get("mountPath"))
        return shared

    def check_group_pod(self, where: str, fld: str, group: dict) -> tuple[dict, set[str]]:
        """Containers, rayStartParams and resources of a head or worker group; returns its
        rayStartParams and its shared mount paths."""
        params = self.need(group, "rayStartParams", where, fld, dict)
        params = params or {}
        for k, v in params.items():
            if not isinstance(v, str):
                self.err(
                    where,
                    f"{fld}.rayStartParams.{k}",
                    f"must be a string (KubeRay: map[string]string), got {v!r}",
                )
        pod = (
            ((group.get("template") or {}).get("spec"))
            if isinstance(group.get("template"), dict)
            else None
        )
        if not isinstance(pod, dict):
            self.err(where, f"{fld}.template.spec", "missing")
            return params, set()
        containers = pod.get("containers")
        if not isinstance(containers, list) or not containers:
            self.err(where, f"{fld}.template.spec.containers", "missing or empty")
            return params, set()
        for i, c in enumerate(containers):
            for key in ("name", "image"):
                self.need(c, key, where, f"{fld}.template.spec.containers[{i}]", str)
        image = containers[0].get("image")
        if isinstance(image, str):
            self.versions.append((f"{where}: {fld}.template.spec.containers[0].image", image))
        res: dict[str, float] = {}
        if "resources" in params:
            try:
                res = parse_ray_resources(params["resources"])
            except ValueError as e:
                self.err(where, f"{fld}.rayStartParams.resources", str(e))
        self.custom_resources(where, f"{fld}.rayStartParams.resources", res)
        gpus = _num(params.get("num-gpus"))
        limits = (containers[0].get("resources") or {}).get("limits") or {}
        gpu_limit = _num(limits.get("nvidia.com/gpu"))
        if (gpus or gpu_limit) and gpus != gpu_limit:
            self.err(
                where,
                f"{fld}.template.spec.containers[0].resources.limits.nvidia.com/gpu",
                f"{limits.get('nvidia.com/gpu')!r} != rayStartParams.num-gpus "
                f"{params.get('num-gpus')!r}",
            )
        return params, self.pod_shared_mounts(where, f"{fld}.template.spec", pod)

    def check_cluster_spec(self, where: str, fld: str, spec: dict) -> set[str]:
        """Checks a RayCluster spec; returns the paths every pod mounts from a shared PVC."""
        version = self.need(spec, "rayVersion", where, fld, str)
        if version is not None:
            self.versions.append((f"{where}: {fld}.rayVersion", version))
        shared: set[str] | None = None
        head = self.need(spec, "headGroupSpec", where, fld, dict)
        if head is not None:
            params, shared = self.check_group_pod(where, f"{fld}.headGroupSpec", head)
            if SHARED_RUNS not in shared:
                self.err(
                    where,
                    f"{fld}.headGroupSpec.template.spec.containers[0].volumeMounts",
                    f"no ReadWriteMany PVC mounted at {SHARED_RUNS}",
                )
            if params.get("num-cpus") != "0":
                self.err(
                    where,
                    f"{fld}.headGroupSpec.rayStartParams.num-cpus",
                    f'expected "0" (nothing scheduled on the head), got {params.get("num-cpus")!r}',
                )
        groups = self.need(spec, "workerGroupSpecs", where, fld, list) or []
        if not groups:
            self.err(where, f"{fld}.workerGroupSpecs", "no worker groups")
        seen: set[str] = set()
        for i, g in enumerate(groups):
            gf = f"{fld}.workerGroupSpecs[{i}]"
            name = self.need(g, "groupName", where, gf, str)
            if name in seen:
                self.err(where, f"{gf}.groupName", f"duplicate {name!r}")
            seen.add(name)
            counts = [
                self.need(g, k, where, gf, int) for k in ("minReplicas", "replicas", "maxReplicas")
            ]
            if None not in counts and not counts[0] <= counts[1] <= counts[2]:
                self.err(
                    where,
                    f"{gf}.replicas",
                    f"expected minReplicas <= replicas <= maxReplicas, got {counts[0]} <= "
                    f"{counts[1]} <= {counts[2]}",
                )
            params, mounts = self.check_group_pod(where, gf, g)
            try:
                res = parse_ray_resources(params["resources"]) if "resources" in params else {}
            except ValueError:
                res = {}  # reported by check_group_pod
            self.slots(
                where,
                f"{gf}.rayStartParams",
                res,
                _num(params.get("num-cpus")),
                _num(params.get("num-gpus")),
            )
            shared = mounts if shared is None else shared & mounts
            if SHARED_RUNS not in mounts:
                self.err(
                    where,
                    f"{gf}.template.spec.containers[0].volumeMounts",
                    f"no ReadWriteMany PVC mounted at {SHARED_RUNS}",
                )
        return shared or set()

    def check_job_spec(self, where: str, fld: str, spec: dict) -> None:
        has_spec, has_sel = "rayClusterSpec" in spec, "clusterSelector" in spec
        shared: set[str] = set()
        if has_spec == has_sel:
            self.err(
                where,
                f"{fld}.rayClusterSpec",
                "set exactly one of rayClusterSpec or clusterSelector",
            )
        if has_spec and isinstance(spec["rayClusterSpec"], dict):
            shared = self.check_cluster_spec(where, f"{fld}.rayClusterSpec", spec["rayClusterSpec"])
        if has_sel:
            name = (spec.get("clusterSelector") or {}).get("ray.io/cluster")
            clusters = self.objects.get("RayCluster", {})
            if not name:
                self.err(where, f"{fld}.clusterSelector", "needs ray.io/cluster: <RayCluster name>")
            elif name not in clusters:
                self.err(
                    where,
                    f"{fld}.clusterSelector.ray.io/cluster",
                    f"no RayCluster {name!r} in k8s/ (have {sorted(clusters)})",
                )
            else:
                _, rc = clusters[name]
                sink = Checker(Manifests([]), self.root)
                sink.objects = self.objects
                shared = sink.check_cluster_spec("", "", rc.get("spec") or {})
            if spec.get("submissionMode") == "SidecarMode":
                self.err(
                    where, f"{fld}.submissionMode", "SidecarMode does not work with clusterSelector"
                )
        mode = spec.get("submissionMode", "K8sJobMode")
        if mode not in SUBMISSION_MODES:
            self.err(
                where,
                f"{fld}.submissionMode",
                f"expected one of {sorted(SUBMISSION_MODES)}, got {mode!r}",
            )
        if "ttlSecondsAfterFinished" in spec and not spec.get("shutdownAfterJobFinishes"):
            self.err(
                where,
                f"{fld}.ttlSecondsAfterFinished",
                "has no effect without shutdownAfterJobFinishes: true",
            )
        entry = self.need(spec, "entrypoint", where, fld, str)
        if entry is not None:
            self.check_entrypoint(where, f"{fld}.entrypoint", entry, shared=shared)
        env_text = self.need(spec, "runtimeEnvYAML", where, fld, str)
        if env_text is not None:
            try:
                env = _load(env_text)
            except yaml.YAMLError as e:
                self.err(where, f"{fld}.runtimeEnvYAML", f"not YAML: {e}")
            else:
                self.check_runtime_env(where, f"{fld}.runtimeEnvYAML", env, require_pip=False)

    def check_entrypoint(self, where: str, fld: str, cmd: str, *, shared: set[str] | None) -> None:
        """``python jobs/X.py FILE.toml [options]``: files exist and decode; ``--out`` is shared."""
        errs = entrypoint_errors(cmd, self.root, shared=shared)
        for e in errs:
            self.err(where, fld, e)

    def check_cronjob(self, where: str, spec: dict) -> None:
        self.check_schedule(where, "spec.schedule", spec.get("schedule"))
        job = self.need(spec, "jobTemplate", where, "spec", dict)
        pod = (((job or {}).get("spec") or {}).get("template") or {}).get("spec")
        if not isinstance(pod, dict):
            self.err(where, "spec.jobTemplate.spec.template.spec", "missing")
            return
        if pod.get("restartPolicy") not in ("Never", "OnFailure"):
            self.err(
                where,
                "spec.jobTemplate.spec.template.spec.restartPolicy",
                f"must be Never or OnFailure, got {pod.get('restartPolicy')!r}",
            )
        containers = pod.get("containers")
        if not isinstance(containers, list) or not containers:
            self.err(where, "spec.jobTemplate.spec.template.spec.containers", "missing or empty")
            return
        cmds = [
            " ".join(map(str, [*(c.get("command") or []), *(c.get("args") or [])]))
            for c in containers
        ]
        if not any("kubectl" in c and "create" in c for c in cmds):
            return
        # A pod that creates RayJobs: its ServiceAccount may, and the RayJob is the RayCronJob's.
        sa = pod.get("serviceAccountName")
        fld = "spec.jobTemplate.spec.template.spec.serviceAccountName"
        if sa not in self.objects.get("ServiceAccount", {}):
            self.err(
                where,
                fld,
                f"no ServiceAccount {sa!r} in k8s/ (kubectl create needs one allowed to create "
                "rayjobs)",
            )
        elif not self.may_create_rayjobs(sa):
            self.err(
                where,
                fld,
                f"ServiceAccount {sa!r} is bound to no Role that may create rayjobs (apiGroups "
                "ray.io, resources rayjobs, verbs create)",
            )
        for v in pod.get("volumes") or []:
            cm = (v.get("configMap") or {}).get("name")
            if cm is None:
                continue
            if cm not in self.objects.get("ConfigMap", {}):
                self.err(
                    where,
                    f"spec.jobTemplate.spec.template.spec.volumes.{v.get('name')}.configMap.name",
                    f"no ConfigMap {cm!r}",
                )
            elif cm in self.embedded_rayjobs or self._scan_configmap(cm):
                self.same_as_raycronjob(where, spec.get("schedule"), *self.embedded_rayjobs[cm])

    def _scan_configmap(self, name: str) -> bool:
        _, body = self.objects["ConfigMap"][name]
        for key, text in (body.get("data") or {}).items():
            try:
                for d in _load_all(text):
                    if isinstance(d, dict) and d.get("kind") == "RayJob":
                        self.embedded_rayjobs[name] = (
                            f"ConfigMap {name} data.{key}",
                            d.get("spec"),
                        )
                        return True
            except yaml.YAMLError:
                pass
        return False

    def may_create_rayjobs(self, sa: str) -> bool:
        roles = self.objects.get("Role", {})
        for _, rb in self.objects.get("RoleBinding", {}).values():
            if not any(
                s.get("kind") == "ServiceAccount" and s.get("name") == sa
                for s in rb.get("subjects") or []
            ):
                continue
            ref = rb.get("roleRef") or {}
            if ref.get("kind") != "Role" or ref.get("name") not in roles:
                continue
            for r in roles[ref["name"]][1].get("rules") or []:
                if (
                    {"ray.io", "*"} & set(r.get("apiGroups") or [])
                    and {"rayjobs", "*"} & set(r.get("resources") or [])
                    and {"create", "*"} & set(r.get("verbs") or [])
                ):
                    return True
        return False

    def same_as_raycronjob(self, where: str, schedule: object, source: str, spec: object) -> None:
        crons = self.objects.get("RayCronJob", {})
        if not crons:
            return
        for _, rc in crons.values():
            s = rc.get("spec") or {}
            if s.get("jobTemplate") == spec and s.get("schedule") == schedule:
                return
        self.err(
            where,
            source,
            "the RayJob spec and schedule differ from every RayCronJob's jobTemplate and schedule "
            f"({sorted(crons)}); keep the two nightly variants equal",
        )

    def check_configmap(self, where: str, b: dict) -> None:
        for key, text in (b.get("data") or {}).items():
            if not str(key).endswith((".yaml", ".yml")):
                continue
            try:
                nested = [d for d in _load_all(text) if d is not None]
            except yaml.YAMLError as e:
                self.err(where, f"data.{key}", f"not YAML: {e}")
                continue
            for d in nested:
                if isinstance(d, dict) and "kind" in d:
                    self.check_k8s(f"{where}: data.{key}", d)

    # -- versions and the Dockerfile

    def check_dockerfile(self, path: str, text: str) -> None:
        images = re.findall(r"^\s*ARG\s+\w*IMAGE\w*=(\S+)", text, re.MULTILINE) + [
            img for img in re.findall(r"^\s*FROM\s+(\S+)", text, re.MULTILINE) if "$" not in img
        ]
        if not images:
            self.err(
                path,
                "FROM",
                "no base image with a Ray version (ARG ...IMAGE=rayproject/ray:X.Y.Z-...)",
            )
        for img in images:
            self.versions.append((f"{path}: base image", img))
        for src in re.findall(r"^\s*COPY\s+(?:--\S+\s+)*(.+)\s+\S+\s*$", text, re.MULTILINE):
            for s in src.split():
                if not (self.root / s).exists():
                    self.err(path, "COPY", f"{s} does not exist in the repository")

    def check_versions(self) -> None:
        found: dict[str, list[str]] = {}
        for where, v in self.versions:
            ver = v if VERSION_RE.match(v) and ":" not in v else image_ray_version(v)
            if ver is None:
                self.err(where, "", f"{v!r} carries no Ray version tag (X.Y.Z...)")
                continue
            found.setdefault(ver, []).append(where)
        if len(found) > 1:
            detail = "; ".join(f"{v}: {', '.join(ws)}" for v, ws in sorted(found.items()))
            self.errors.append(f"more than one Ray version across cluster/ and k8s/ - {detail}")
        extra = next(
            (
                r
                for r in pyproject()["project"]["optional-dependencies"].get("ray", [])
                if r.startswith("ray")
            ),
            "",
        )
        m = re.search(r">=\s*([\d.]+)", extra)
        if m:
            floor = tuple(int(x) for x in m.group(1).split("."))
            for ver, ws in found.items():
                if tuple(int(x) for x in ver.split(".")) < floor:
                    self.errors.append(f"{ws[0]}: Ray {ver} is older than pyproject's {extra!r}")


def entrypoint_errors(cmd: str, root: Path = ROOT, *, shared: set[str] | None = None) -> list[str]:
    """What is wrong with a job entrypoint ``python jobs/X.py FILE.toml [options]``."""
    try:
        argv = shlex.split(cmd)
    except ValueError as e:
        return [f"cannot be split into words: {e}"]
    if len(argv) < 2 or argv[0] not in ("python", "python3"):
        return [f"expected `python jobs/<script>.py ...`, got {cmd!r}"]
    errs = []
    script = argv[1]
    if not (script.startswith("jobs/") and script.endswith(".py")):
        errs.append(f"script {script!r} is not a jobs/*.py entry point")
    elif not (root / script).is_file():
        errs.append(f"script {script} does not exist")
    tomls = [a for a in argv[2:] if a.endswith(".toml")]
    if not tomls:
        errs.append("names no study or sweep file (*.toml)")
    for t in tomls:
        p = root / t
        if not p.is_file():
            errs.append(f"{t} does not exist")
        elif t.startswith("studies/"):
            try:
                load_study(p)
            except RecoWorldError as e:  # the message names the file and the field
                errs.append(f"study does not decode: {e}")
        elif t.startswith("sweeps/"):
            if (e := _sweep_error(p)) is not None:
                errs.append(f"sweep does not decode: {e}")
        else:
            errs.append(f"{t} is neither under studies/ nor sweeps/")
    if shared is not None:
        if "--out" not in argv[:-1]:
            errs.append(
                f"no --out: runs would stay in the pod's working dir; pass --out {SHARED_RUNS}"
            )
        else:
            out = argv[argv.index("--out") + 1]
            if out not in shared:
                errs.append(
                    f"--out {out} is not shared storage on every pod (shared: "
                    f"{sorted(shared) or 'none'})"
                )
    return errs


def _sweep_error(path: Path) -> str | None:
    """Decode with recoworld.sweep.load_sweep when that module and function exist."""
    if importlib.util.find_spec("recoworld.sweep") is None:
        return None
    try:
        module = importlib.import_module("recoworld.sweep")
    except Exception as e:  # noqa: BLE001 - any import failure is the finding
        return f"recoworld.sweep does not import: {type(e).__name__}: {e}"
    load_sweep = getattr(module, "load_sweep", None)
    if load_sweep is None:
        return None
    try:
        load_sweep(path)
    except Exception as e:  # noqa: BLE001 - its error type is not settled yet
        return str(e)
    return None


def check_manifests(manifests: Manifests, root: Path = ROOT) -> list[str]:
    return Checker(manifests, root).run()


# --------------------------------------------------------------------------------------------
# The real manifests


@pytest.fixture(scope="module")
def real() -> Manifests:
    return load_manifests()


def test_expected_files_exist(real: Manifests) -> None:
    found = {d.path for d in real.docs} | set(real.dockerfiles)
    assert EXPECTED_FILES <= found, f"missing: {sorted(EXPECTED_FILES - found)}"


def test_real_manifests_have_no_errors(real: Manifests) -> None:
    errors = check_manifests(real)
    assert errors == [], "\n".join(errors)


def test_launcher_config_matches_rays_schema(real: Manifests) -> None:
    """Ray's own JSON schema for cluster configs (ships with the ray wheel); skipped without it."""
    jsonschema = pytest.importorskip("jsonschema")
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ray is not installed (pip install -e '.[ray]')")
    schema_path = Path(spec.submodule_search_locations[0]) / "autoscaler" / "ray-schema.json"
    if not schema_path.is_file():
        pytest.skip(f"{schema_path} not found")
    schema = json.loads(schema_path.read_text())
    launchers = [
        d for d in real.docs if d.path.startswith("cluster/") and "available_node_types" in d.body
    ]
    assert launchers
    for d in launchers:
        errs = [
            f"{d.where}: {'.'.join(map(str, e.path))}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(d.body)
        ]
        assert errs == [], "\n".join(errs)


def test_docs_name_existing_files() -> None:
    text = (ROOT / "docs" / "cluster.md").read_text()
    named = set(
        re.findall(
            r"\b((?:cluster|k8s|jobs|studies|sweeps|docs)/[\w./-]+\.(?:ya?ml|py|toml|md)|k8s/Dockerfile)\b",
            text,
        )
    )
    assert named, "docs/cluster.md names no files"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == [], f"docs/cluster.md names files that do not exist: {missing}"


def test_docs_entrypoints_are_valid() -> None:
    """The `ray job submit ... -- python jobs/...` commands of docs/cluster.md."""
    text = (ROOT / "docs" / "cluster.md").read_text().replace("\\\n", " ")
    cmds = re.findall(r" -- (python jobs/[^\n`]+)", text)
    assert cmds, "docs/cluster.md shows no `ray job submit ... -- python jobs/...`"
    for c in cmds:
        assert entrypoint_errors(c.strip()) == [], c


# --------------------------------------------------------------------------------------------
# Each check can fail: broken copies of the real manifests give the specific error


def _obj(m: Manifests, path: str, kind: str | None = None) -> dict:
    for d in m.docs:
        if d.path == path and (kind is None or d.body.get("kind") == kind):
            return d.body
    raise KeyError((path, kind))


def _launcher(m: Manifests) -> dict:
    return _obj(m, "cluster/ray-cluster.yaml")


def _rc(m: Manifests) -> dict:
    return _obj(m, "k8s/raycluster.yaml", "RayCluster")["spec"]


def _group(m: Manifests, name: str) -> dict:
    return next(g for g in _rc(m)["workerGroupSpecs"] if g["groupName"] == name)


def _job(m: Manifests) -> dict:
    return _obj(m, "k8s/rayjob-whatif.yaml", "RayJob")["spec"]


def _cron(m: Manifests) -> dict:
    return _obj(m, "k8s/nightly-sweep.yaml", "RayCronJob")["spec"]


def _set_env(spec: dict, fn: Callable[[dict], None]) -> None:
    env = _load(spec["runtimeEnvYAML"])
    fn(env)
    spec["runtimeEnvYAML"] = yaml.safe_dump(env)


def _set_embedded(m: Manifests, fn: Callable[[dict], None]) -> None:
    cm = _obj(m, "k8s/nightly-sweep-cronjob.yaml", "ConfigMap")
    job = _load(cm["data"]["rayjob.yaml"])
    fn(job)
    cm["data"]["rayjob.yaml"] = yaml.safe_dump(job)


def _del(d: dict, key: str) -> None:
    del d[key]


BREAKAGES: list[tuple[str, Callable[[Manifests], None], list[str]]] = [
    # the cluster launcher
    (
        "launcher-no-cluster-name",
        lambda m: _del(_launcher(m), "cluster_name"),
        ["cluster/ray-cluster.yaml", "cluster_name: missing"],
    ),
    (
        "launcher-no-max-workers",
        lambda m: _del(_launcher(m), "max_workers"),
        ["cluster/ray-cluster.yaml", "max_workers: missing"],
    ),
    (
        "launcher-no-provider-type",
        lambda m: _del(_launcher(m)["provider"], "type"),
        ["cluster/ray-cluster.yaml", "provider.type: missing"],
    ),
    (
        "launcher-head-type-unknown",
        lambda m: _launcher(m).update(head_node_type="ray.head.default"),
        ["cluster/ray-cluster.yaml", "head_node_type", "not among"],
    ),
    (
        "launcher-type-no-max-workers",
        lambda m: _del(_launcher(m)["available_node_types"]["cpu-shards"], "max_workers"),
        ["cluster/ray-cluster.yaml", "available_node_types.cpu-shards.max_workers: missing"],
    ),
    (
        "launcher-type-no-node-config",
        lambda m: _del(_launcher(m)["available_node_types"]["gpu-llm"], "node_config"),
        ["cluster/ray-cluster.yaml", "available_node_types.gpu-llm.node_config: missing"],
    ),
    (
        "launcher-min-over-max",
        lambda m: _launcher(m)["available_node_types"]["cpu-shards"].update(min_workers=99),
        ["cluster/ray-cluster.yaml", "cpu-shards.min_workers", "> max_workers"],
    ),
    (
        "launcher-unknown-resource",
        lambda m: _launcher(m)["available_node_types"]["cpu-shards"]["resources"].update(
            recoworld_shards=64
        ),
        [
            "cluster/ray-cluster.yaml",
            "cpu-shards.resources",
            "unknown custom resource 'recoworld_shards'",
        ],
    ),
    (
        "launcher-head-has-cpus",
        lambda m: _launcher(m)["available_node_types"]["head"]["resources"].update(CPU=8),
        ["cluster/ray-cluster.yaml", "head.resources.CPU", "CPU 0"],
    ),
    (
        "launcher-llm-slots-not-gpus",
        lambda m: _launcher(m)["available_node_types"]["gpu-llm"]["resources"].update(
            recoworld_llm=8
        ),
        ["cluster/ray-cluster.yaml", "gpu-llm.resources", "recoworld_llm 8 != GPUs 4"],
    ),
    (
        "launcher-shards-over-cpus",
        lambda m: _launcher(m)["available_node_types"]["cpu-shards"]["resources"].update(
            recoworld_shard=128
        ),
        ["cluster/ray-cluster.yaml", "cpu-shards.resources", "recoworld_shard 128 > CPUs 64"],
    ),
    (
        "launcher-no-install",
        lambda m: _launcher(m).update(setup_commands=["echo hi"]),
        ["cluster/ray-cluster.yaml", "setup_commands", "installs the project"],
    ),
    (
        "launcher-other-ray-version",
        lambda m: _launcher(m)["docker"].update(image="rayproject/ray:2.59.0-py311"),
        ["more than one Ray version", "2.59.0: cluster/ray-cluster.yaml: docker.image"],
    ),
    # runtime envs
    (
        "runtime-env-uploads-runs",
        lambda m: _obj(m, "cluster/runtime_env.yaml")["excludes"].remove("runs/"),
        ["cluster/runtime_env.yaml", "excludes", "does not exclude runs/"],
    ),
    (
        "runtime-env-no-excludes",
        lambda m: _del(_obj(m, "cluster/runtime_env.yaml"), "excludes"),
        ["cluster/runtime_env.yaml", "excludes: missing"],
    ),
    (
        "runtime-env-pip-drift",
        lambda m: _obj(m, "cluster/runtime_env.yaml")["pip"].remove("polars>=1.0"),
        ["cluster/runtime_env.yaml", "pip", "missing ['polars>=1.0']"],
    ),
    (
        "runtime-env-env-var-not-str",
        lambda m: _obj(m, "cluster/runtime_env.yaml")["env_vars"].update(N=1),
        ["cluster/runtime_env.yaml", "env_vars.N", "string values"],
    ),
    (
        "rayjob-env-uploads-venv",
        lambda m: _set_env(_job(m), lambda e: e["excludes"].remove(".venv/")),
        [
            "k8s/rayjob-whatif.yaml",
            "RayJob recoworld-whatif",
            "spec.runtimeEnvYAML.excludes",
            "does not exclude .venv/",
        ],
    ),
    # RayCluster
    (
        "raycluster-old-api",
        lambda m: _obj(m, "k8s/raycluster.yaml", "RayCluster").update(apiVersion="ray.io/v1alpha1"),
        ["k8s/raycluster.yaml", "RayCluster recoworld", "apiVersion", "expected ray.io/v1"],
    ),
    (
        "raycluster-no-ray-version",
        lambda m: _del(_rc(m), "rayVersion"),
        ["k8s/raycluster.yaml", "spec.rayVersion: missing"],
    ),
    (
        "raycluster-no-head-params",
        lambda m: _del(_rc(m)["headGroupSpec"], "rayStartParams"),
        ["k8s/raycluster.yaml", "spec.headGroupSpec.rayStartParams: missing"],
    ),
    (
        "raycluster-no-head-containers",
        lambda m: _del(_rc(m)["headGroupSpec"]["template"]["spec"], "containers"),
        ["k8s/raycluster.yaml", "spec.headGroupSpec.template.spec.containers", "missing"],
    ),
    (
        "raycluster-head-schedules",
        lambda m: _rc(m)["headGroupSpec"]["rayStartParams"].update({"num-cpus": "8"}),
        ["k8s/raycluster.yaml", "headGroupSpec.rayStartParams.num-cpus", 'expected "0"'],
    ),
    (
        "raycluster-param-not-str",
        lambda m: _group(m, "cpu-shards")["rayStartParams"].update({"num-cpus": 16}),
        ["k8s/raycluster.yaml", "workerGroupSpecs[0].rayStartParams.num-cpus", "must be a string"],
    ),
    (
        "raycluster-no-group-name",
        lambda m: _del(_group(m, "gpu-llm"), "groupName"),
        ["k8s/raycluster.yaml", "workerGroupSpecs[1].groupName: missing"],
    ),
    (
        "raycluster-replicas-over-max",
        lambda m: _group(m, "cpu-shards").update(replicas=17),
        ["k8s/raycluster.yaml", "workerGroupSpecs[0].replicas", "0 <= 17 <= 16"],
    ),
    (
        "raycluster-no-min-replicas",
        lambda m: _del(_group(m, "cpu-shards"), "minReplicas"),
        ["k8s/raycluster.yaml", "workerGroupSpecs[0].minReplicas: missing"],
    ),
    (
        "raycluster-no-template",
        lambda m: _del(_group(m, "cpu-shards"), "template"),
        ["k8s/raycluster.yaml", "workerGroupSpecs[0].template.spec: missing"],
    ),
    (
        "raycluster-unknown-resource",
        lambda m: _group(m, "cpu-shards")["rayStartParams"].update(
            resources='"{\\"recoworld_gpu\\": 1}"'
        ),
        [
            "k8s/raycluster.yaml",
            "workerGroupSpecs[0].rayStartParams.resources",
            "unknown custom resource 'recoworld_gpu'",
        ],
    ),
    (
        "raycluster-resources-not-json",
        lambda m: _group(m, "cpu-shards")["rayStartParams"].update(
            resources="{recoworld_shard: 16}"
        ),
        [
            "k8s/raycluster.yaml",
            "workerGroupSpecs[0].rayStartParams.resources",
            "not a JSON object",
        ],
    ),
    (
        "raycluster-gpu-limit-not-num-gpus",
        lambda m: _group(m, "gpu-llm")["template"]["spec"]["containers"][0]["resources"][
            "limits"
        ].update({"nvidia.com/gpu": "2"}),
        [
            "k8s/raycluster.yaml",
            "workerGroupSpecs[1].template.spec.containers[0].resources.limits.nvidia.com/gpu",
            "'2' != rayStartParams.num-gpus '1'",
        ],
    ),
    (
        "raycluster-llm-slots-not-gpus",
        lambda m: _group(m, "gpu-llm")["rayStartParams"].update(
            resources='"{\\"recoworld_llm\\": 2}"'
        ),
        ["k8s/raycluster.yaml", "workerGroupSpecs[1].rayStartParams", "recoworld_llm 2 != GPUs 1"],
    ),
    (
        "raycluster-image-version",
        lambda m: _group(m, "gpu-llm")["template"]["spec"]["containers"][0].update(
            image="recoworld-ray:2.52.0-py311-gpu"
        ),
        [
            "more than one Ray version",
            "2.52.0: k8s/raycluster.yaml: RayCluster recoworld: "
            "spec.workerGroupSpecs[1].template.spec.containers[0].image",
        ],
    ),
    (
        "raycluster-no-runs-mount",
        lambda m: _group(m, "cpu-shards")["template"]["spec"]["containers"][0]["volumeMounts"].pop(
            0
        ),
        [
            "k8s/raycluster.yaml",
            "workerGroupSpecs[0].template.spec.containers[0].volumeMounts",
            "no ReadWriteMany PVC mounted at /mnt/runs",
        ],
    ),
    (
        "raycluster-unknown-pvc",
        lambda m: _group(m, "cpu-shards")["template"]["spec"]["volumes"][0][
            "persistentVolumeClaim"
        ].update(claimName="runs"),
        ["k8s/raycluster.yaml", "claimName", "no PersistentVolumeClaim 'runs'"],
    ),
    (
        "pvc-not-rwx",
        lambda m: _obj(m, "k8s/pvc.yaml")["spec"].update(accessModes=["ReadWriteOnce"]),
        [
            "k8s/pvc.yaml",
            "PersistentVolumeClaim recoworld-shared",
            "spec.accessModes",
            "ReadWriteMany",
        ],
    ),
    # RayJob and entrypoints
    (
        "rayjob-no-entrypoint",
        lambda m: _del(_job(m), "entrypoint"),
        ["k8s/rayjob-whatif.yaml", "spec.entrypoint: missing"],
    ),
    (
        "rayjob-no-cluster",
        lambda m: _del(_job(m), "clusterSelector"),
        ["k8s/rayjob-whatif.yaml", "exactly one of rayClusterSpec or clusterSelector"],
    ),
    (
        "rayjob-unknown-cluster",
        lambda m: _job(m)["clusterSelector"].update({"ray.io/cluster": "raycluster-kuberay"}),
        [
            "k8s/rayjob-whatif.yaml",
            "clusterSelector.ray.io/cluster",
            "no RayCluster 'raycluster-kuberay'",
        ],
    ),
    (
        "rayjob-bad-mode",
        lambda m: _job(m).update(submissionMode="K8sMode"),
        ["k8s/rayjob-whatif.yaml", "spec.submissionMode", "'K8sMode'"],
    ),
    (
        "rayjob-ttl-without-shutdown",
        lambda m: _job(m).update(ttlSecondsAfterFinished=60),
        ["k8s/rayjob-whatif.yaml", "spec.ttlSecondsAfterFinished", "shutdownAfterJobFinishes"],
    ),
    (
        "rayjob-missing-script",
        lambda m: _job(m).update(
            entrypoint=_job(m)["entrypoint"].replace("jobs/whatif.py", "jobs/what_if.py")
        ),
        ["k8s/rayjob-whatif.yaml", "spec.entrypoint", "script jobs/what_if.py does not exist"],
    ),
    (
        "rayjob-missing-study",
        lambda m: _job(m).update(entrypoint=_job(m)["entrypoint"].replace(".toml", "_x.toml")),
        ["k8s/rayjob-whatif.yaml", "spec.entrypoint", "_x.toml does not exist"],
    ),
    (
        "rayjob-out-not-shared",
        lambda m: _job(m).update(
            entrypoint=_job(m)["entrypoint"].replace("--out /mnt/runs", "--out /tmp/runs")
        ),
        ["k8s/rayjob-whatif.yaml", "spec.entrypoint", "--out /tmp/runs is not shared storage"],
    ),
    (
        "rayjob-no-out",
        lambda m: _job(m).update(entrypoint=_job(m)["entrypoint"].replace(" --out /mnt/runs", "")),
        ["k8s/rayjob-whatif.yaml", "spec.entrypoint", "no --out"],
    ),
    # RayCronJob, CronJob and RBAC
    (
        "raycronjob-bad-hour",
        lambda m: _cron(m).update(schedule="0 25 * * *"),
        ["k8s/nightly-sweep.yaml", "RayCronJob recoworld-nightly", "spec.schedule", "hour"],
    ),
    (
        "raycronjob-six-fields",
        lambda m: _cron(m).update(schedule="0 0 2 * * *"),
        ["k8s/nightly-sweep.yaml", "spec.schedule", "expected 5 fields"],
    ),
    (
        "raycronjob-no-template",
        lambda m: _del(_cron(m), "jobTemplate"),
        ["k8s/nightly-sweep.yaml", "spec.jobTemplate: missing"],
    ),
    (
        "raycronjob-gpu-limit",
        lambda m: _cron(m)["jobTemplate"]["rayClusterSpec"]["workerGroupSpecs"][1][
            "rayStartParams"
        ].update({"num-gpus": "2"}),
        [
            "k8s/nightly-sweep.yaml",
            "spec.jobTemplate.rayClusterSpec.workerGroupSpecs[1].template.spec.containers[0].resources.limits.nvidia.com/gpu",
        ],
    ),
    (
        "cronjob-bad-schedule",
        lambda m: _obj(m, "k8s/nightly-sweep-cronjob.yaml", "CronJob")["spec"].update(
            schedule="@nightly"
        ),
        [
            "k8s/nightly-sweep-cronjob.yaml",
            "CronJob recoworld-nightly",
            "spec.schedule",
            "expected 5 fields",
        ],
    ),
    (
        "cronjob-no-job-template",
        lambda m: _del(_obj(m, "k8s/nightly-sweep-cronjob.yaml", "CronJob")["spec"], "jobTemplate"),
        ["k8s/nightly-sweep-cronjob.yaml", "spec.jobTemplate: missing"],
    ),
    (
        "cronjob-role-cannot-create",
        lambda m: _obj(m, "k8s/nightly-sweep-cronjob.yaml", "Role")["rules"][0].update(
            verbs=["get", "list"]
        ),
        ["k8s/nightly-sweep-cronjob.yaml", "serviceAccountName", "may create rayjobs"],
    ),
    (
        "cronjob-unknown-sa",
        lambda m: _obj(m, "k8s/nightly-sweep-cronjob.yaml", "CronJob")["spec"]["jobTemplate"][
            "spec"
        ]["template"]["spec"].update(serviceAccountName="default"),
        ["k8s/nightly-sweep-cronjob.yaml", "serviceAccountName", "no ServiceAccount 'default'"],
    ),
    (
        "cronjob-rayjob-drifts",
        lambda m: _set_embedded(m, lambda j: j["spec"].update(activeDeadlineSeconds=60)),
        [
            "k8s/nightly-sweep-cronjob.yaml",
            "ConfigMap recoworld-nightly-rayjob data.rayjob.yaml",
            "differ from every RayCronJob",
        ],
    ),
    (
        "cronjob-rayjob-bad-study",
        lambda m: _set_embedded(
            m, lambda j: j["spec"].update(entrypoint="python jobs/nightly_sweep.py --out /mnt/runs")
        ),
        [
            "k8s/nightly-sweep-cronjob.yaml",
            "data.rayjob.yaml",
            "RayJob recoworld-nightly-",
            "spec.entrypoint",
            "names no study or sweep file",
        ],
    ),
    (
        "unknown-kind",
        lambda m: m.docs.append(
            Doc(
                "k8s/extra.yaml",
                0,
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}},
            )
        ),
        ["k8s/extra.yaml", "Secret x", "kind", "add its checks"],
    ),
    # the Dockerfile
    (
        "dockerfile-other-ray",
        lambda m: m.dockerfiles.update(
            {"k8s/Dockerfile": m.dockerfiles["k8s/Dockerfile"].replace("ray:2.60.0", "ray:2.61.0")}
        ),
        ["more than one Ray version", "2.61.0: k8s/Dockerfile: base image"],
    ),
    (
        "dockerfile-copies-missing",
        lambda m: m.dockerfiles.update(
            {"k8s/Dockerfile": m.dockerfiles["k8s/Dockerfile"] + "COPY notthere/ notthere/\n"}
        ),
        ["k8s/Dockerfile", "COPY", "notthere/ does not exist"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [(f, e) for _, f, e in BREAKAGES], ids=[n for n, _, _ in BREAKAGES]
)
def test_broken_copy_is_reported(
    real: Manifests, mutate: Callable[[Manifests], None], expected: list[str]
) -> None:
    broken = copy.deepcopy(real)
    mutate(broken)
    errors = check_manifests(broken)
    assert any(all(x in e for x in expected) for e in errors), (
        f"expected an error with {expected}; got:\n" + "\n".join(errors)
    )


# --------------------------------------------------------------------------------------------
# The parsers


@pytest.mark.parametrize(
    "expr",
    ["0 2 * * *", "*/15 * * * *", "0 0-6/2 1,15 JAN-MAR mon-fri", "30 4 * * 7", "5/10 * * * *"],
)
def test_cron_accepts(expr: str) -> None:
    assert cron_error(expr) is None


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("0 2 * *", "expected 5 fields"),
        ("@daily", "expected 5 fields"),
        ("60 * * * *", "minute: '60' is outside 0-59"),
        ("0 0 0 * *", "day of month: '0' is outside 1-31"),
        ("0 0 * 13 *", "month: '13' is outside 1-12"),
        ("0 0 * * 8", "day of week: '8' is outside 0-7"),
        ("0 5-1 * * *", "hour: range '5-1' runs backwards"),
        ("*/0 * * * *", "minute: step '0'"),
        ("0 0 * FOO *", "month: 'FOO'"),
        (None, "expected a cron string"),
    ],
)
def test_cron_rejects(expr: object, fragment: str) -> None:
    e = cron_error(expr)
    assert e is not None and fragment in e, e


def test_ray_resources_forms() -> None:
    assert parse_ray_resources('"{\\"recoworld_shard\\": 16, \\"recoworld_llm\\": 1}"') == {
        "recoworld_shard": 16,
        "recoworld_llm": 1,
    }
    assert parse_ray_resources('{"recoworld_llm": 1}') == {"recoworld_llm": 1}
    for bad in ("{recoworld_llm: 1}", '"[1, 2]"', '{"x": "1"}', 3):
        with pytest.raises(ValueError):
            parse_ray_resources(bad)


def test_image_ray_version() -> None:
    assert image_ray_version("rayproject/ray:2.60.0-py311-gpu") == "2.60.0"
    assert image_ray_version("registry.example.com:5000/team/recoworld-ray:2.60.0") == "2.60.0"
    assert image_ray_version("rayproject/ray:latest") is None
    assert image_ray_version("rayproject/ray") is None


def test_entrypoint_reports_a_study_that_does_not_decode(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "whatif.py").write_text("")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "bad.toml").write_text('name = "bad"\n[simulation]\nturn = 3\n')
    errs = entrypoint_errors("python jobs/whatif.py studies/bad.toml --ray auto", tmp_path)
    assert (
        len(errs) == 1
        and "study does not decode" in errs[0]
        and "bad.toml" in errs[0]
        and "turn" in errs[0]
    ), errs


def test_entrypoint_shape() -> None:
    assert (
        "expected `python jobs/<script>.py"
        in entrypoint_errors("bash -c 'python jobs/whatif.py x.toml'")[0]
    )
    assert any(
        "not a jobs/*.py entry point" in e
        for e in entrypoint_errors("python recoworld/cli.py studies/creator_scifi.toml")
    )
    assert any(
        "neither under studies/ nor sweeps/" in e
        for e in entrypoint_errors("python jobs/whatif.py pyproject.toml")
    )
