#!/usr/bin/env python3
"""The checks behind scripts/check-deploy, one subcommand each.

Each check prints what it looked at and, on a problem, one line per finding naming the file, the object and
the variable or field at fault, then exits 1. scripts/check-deploy runs them on the real Dockerfile and
manifests, and `scripts/check-deploy --self-test` runs them on broken copies and expects each to fail.
Needs PyYAML and jsonschema, which kubernetes-validate brings.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Kinds whose pods run containers: where environment variables are set.
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"}
# Cluster-scoped kinds Squall renders (everything else must land in the Squall namespace).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass",
                  "StorageClass", "PersistentVolume", "ClusterTriggerAuthentication"}
# Libraries every debian:bookworm-slim image already has: libc6 is essential, and apt (required) depends on
# libstdc++6 and libgcc-s1. Anything else a binary links must come from the runtime stage's apt-get install.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}
# The Consumer's own shutdown grace (DESIGN.md / the services issue: default 25 s, below Kubernetes' 30 s).
CONSUMER_GRACE_SECONDS = 25

failures: list[str] = []


def fail(message: str) -> None:
    failures.append(message)
    print(f"  FAIL {message}")


def info(message: str) -> None:
    print(f"  {message}")


def finish(what: str) -> int:
    if failures:
        print(f"check-deploy: {what}: {len(failures)} problem(s)")
        return 1
    print(f"check-deploy: {what}: ok")
    return 0


def load_objects(path: str) -> list[dict]:
    with open(path) as f:
        return [o for o in yaml.safe_load_all(f) if o]


def object_name(obj: dict) -> str:
    return f"{obj.get('kind', '?')}/{obj.get('metadata', {}).get('name', '?')}"


def pod_spec(obj: dict) -> dict | None:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec")
    if kind in WORKLOAD_KINDS:
        return (spec.get("template") or {}).get("spec")
    return None


def image_repository(image: str) -> str:
    """`registry:5000/team/squall-consumer:1.2@sha256:…` → `squall-consumer`."""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


# ---------------------------------------------------------------------------------------------------------
# Package.swift and the Dockerfile


def executable_products(package_swift: str) -> list[str]:
    text = Path(package_swift).read_text()
    products = re.findall(r'\.executable\(\s*name:\s*"([^"]+)"', text)
    if not products:
        fail(f"{package_swift}: no .executable(name: …) product found")
    return products


def docker_target(product: str) -> str:
    """The Dockerfile target of a product: squall-consumer → consumer, squallctl → squallctl."""
    return product.removeprefix("squall-")


@dataclass
class Stage:
    name: str | None
    base: str
    line: int
    instructions: list[tuple[int, str, str]] = field(default_factory=list)  # (line, INSTRUCTION, arguments)


@dataclass
class Dockerfile:
    path: str
    args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def chain(self, stage: Stage) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first."""
        chain = [stage]
        while True:
            parent = self.stage(chain[-1].base)
            if parent is None or parent in chain:
                return chain
            chain.append(parent)


def parse_dockerfile(path: str) -> Dockerfile:
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    if buffer:
        logical.append((start, buffer))

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        rest = rest.strip()
        if instruction == "ARG" and not stages:
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip().strip('"')
        elif instruction == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(name=name, base=base, line=number))
        elif stages:
            stages[-1].instructions.append((number, instruction, rest))
    return Dockerfile(path=path, args=args, stages=stages)


def apt_packages(stage: Stage) -> list[str]:
    packages: list[str] = []
    for _, instruction, rest in stage.instructions:
        if instruction != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", rest):
            words = command.split()
            if len(words) >= 2 and words[0] in ("apt-get", "apt") and "install" in words:
                after = words[words.index("install") + 1:]
                packages += [w.split("=", 1)[0] for w in after if not w.startswith("-")]
    return packages


def exec_form(arguments: str) -> list[str] | None:
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def stage_env(dockerfile: Dockerfile, stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for s in reversed(dockerfile.chain(stage)):
        for _, instruction, rest in s.instructions:
            if instruction == "ENV":
                for word in shlex.split(rest):
                    name, _, value = word.partition("=")
                    env[name] = value
    return env


def stage_exposed(dockerfile: Dockerfile, stage: Stage) -> set[str]:
    ports: set[str] = set()
    for s in dockerfile.chain(stage):
        for _, instruction, rest in s.instructions:
            if instruction == "EXPOSE":
                ports |= {p.split("/", 1)[0] for p in rest.split()}
    return ports


# ---------------------------------------------------------------------------------------------------------
# Subcommands


def cmd_validate(a: argparse.Namespace) -> int:
    """Every rendered object against its schema: Kubernetes' own (strict), or ours for custom resources."""
    import jsonschema
    import kubernetes_validate.utils as kv

    schemas = {p.stem: json.loads(p.read_text()) for p in Path(a.schemas).glob("*.json")}
    for path in a.files:
        objects = load_objects(path)
        info(f"{path}: {len(objects)} objects against Kubernetes {', '.join(a.k8s_version)} (strict)")
        for obj in objects:
            name = object_name(obj)
            if not isinstance(obj.get("apiVersion"), str) or not isinstance(obj.get("kind"), str):
                fail(f"{path}: {name}: no apiVersion or kind")
                continue
            for version in a.k8s_version:
                try:
                    kv.validate(obj, version, strict=True)
                except kv.ValidationError as e:
                    where = ".".join(str(p) for p in e.path) or "(top)"
                    fail(f"{path}: {name}: {where}: {e.message} (Kubernetes {e.version})")
                    break
                except kv.SchemaNotFoundError:
                    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj["apiVersion"])
                    key = f"{obj['kind'].lower()}-{group}"
                    schema = schemas.get(key)
                    if schema is None:
                        fail(f"{path}: {name}: {obj['apiVersion']} is not a Kubernetes kind and "
                             f"{a.schemas}/{key}.json does not exist (write one, see {a.schemas}/README.md)")
                        break
                    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj),
                                    key=lambda e: list(e.path))
                    for e in errors:
                        where = ".".join(str(p) for p in e.path) or "(top)"
                        fail(f"{path}: {name}: {where}: {e.message} (schema {a.schemas}/{key}.json)")
                    if not errors:
                        info(f"{name}: custom resource, validated against {a.schemas}/{key}.json")
                    break
    return finish("schemas")


def cmd_products(a: argparse.Namespace) -> int:
    """Every executable product has a Dockerfile target, and a Deployment (squallctl: the migrate Job)."""
    products = executable_products(a.package)
    dockerfile = parse_dockerfile(a.dockerfile)
    info(f"{a.package}: executable products {', '.join(products)}")
    for product in products:
        target = docker_target(product)
        stage = dockerfile.stage(target)
        if stage is None:
            fail(f"{a.dockerfile}: no stage `FROM … AS {target}` for the product {product}")
            continue
        copies = [rest for _, i, rest in stage.instructions if i == "COPY" and re.search(rf"/{re.escape(product)}(\s|$)", rest)]
        if not copies:
            fail(f"{a.dockerfile}: target {target} does not COPY the binary {product}")
        entry = [exec_form(rest) for _, i, rest in stage.instructions if i == "ENTRYPOINT"]
        if not entry:
            fail(f"{a.dockerfile}: target {target} has no ENTRYPOINT")
        elif entry[-1] is None:
            fail(f"{a.dockerfile}: target {target}: ENTRYPOINT is in shell form; use exec form "
                 f'["/usr/local/bin/{product}"] so SIGTERM reaches the process')
        elif os.path.basename(entry[-1][0]) != product:
            fail(f"{a.dockerfile}: target {target}: ENTRYPOINT runs {entry[-1][0]}, not {product}")
        if not any(i == "USER" and rest.split(":")[0].isdigit() and rest.split(":")[0] != "0"
                   for s in dockerfile.chain(stage) for _, i, rest in s.instructions):
            fail(f"{a.dockerfile}: target {target}: no numeric non-root USER (runAsNonRoot needs a number)")
        if product != "squallctl" and not stage_exposed(dockerfile, stage):
            fail(f"{a.dockerfile}: target {target}: no EXPOSE of the health port")
    for s in dockerfile.stages:
        if s.base == "scratch" or dockerfile.stage(s.base):
            continue
        if ":" not in s.base.rsplit("/", 1)[-1] or not re.search(r":[^@]*\d", s.base) or s.base.endswith(":latest"):
            fail(f"{a.dockerfile}:{s.line}: base image {s.base} is not pinned to a version")

    for path in a.rendered:
        objects = load_objects(path)
        for product in products:
            workloads = []
            for obj in objects:
                spec = pod_spec(obj)
                if spec and any(image_repository(c.get("image", "")) == product for c in spec.get("containers", [])):
                    workloads.append(obj)
            if product == "squallctl":
                jobs = [o for o in workloads if o["kind"] == "Job" and any(
                    (c.get("args") or c.get("command") or [None])[0] == "migrate" for c in pod_spec(o)["containers"])]
                if not jobs:
                    fail(f"{path}: no Job runs `squallctl migrate` (image squallctl, args [migrate])")
                else:
                    info(f"{path}: squallctl → {', '.join(object_name(o) for o in jobs)}")
            else:
                deployments = [o for o in workloads if o["kind"] == "Deployment"]
                if not deployments:
                    fail(f"{path}: no Deployment runs the image {product}")
                else:
                    info(f"{path}: {product} → {', '.join(object_name(o) for o in deployments)}")
    return finish("products")


def parse_help_variables(text: str) -> set[str]:
    # ArgumentParser wraps help text, so "(env" and the name may sit on two lines: join whitespace first.
    return set(re.findall(r"\(env ([A-Z][A-Z0-9_]*)", re.sub(r"\s+", " ", text)))


def accepted_variables(help_dir: str) -> dict[str, set[str]]:
    """`<product>.help` → its variables; `squallctl.<sub>.help` → `squallctl <sub>`'s."""
    accepted: dict[str, set[str]] = {}
    for p in sorted(Path(help_dir).glob("*.help")):
        accepted[p.name.removesuffix(".help")] = parse_help_variables(p.read_text())
    return accepted


def cmd_env(a: argparse.Namespace) -> int:
    """Every variable a Squall container is given is one its executable reads (from the binaries' --help)."""
    accepted = accepted_variables(a.help_dir)
    products = executable_products(a.package)
    for product in products:
        names = sorted(v for k, v in accepted.items() if k == product or k.startswith(product + "."))
        if not names:
            fail(f"{a.help_dir}: no --help output for {product}")
    everything = set().union(*accepted.values()) if accepted else set()
    info(f"variables the executables read (from --help): {', '.join(sorted(everything))}")

    def accepted_by(product: str, args: list[str]) -> tuple[set[str], str]:
        if args and f"{product}.{args[0]}" in accepted:
            return accepted[f"{product}.{args[0]}"], f"{product} {args[0]}"
        subs = {k: v for k, v in accepted.items() if k.startswith(product + ".")}
        if subs:
            if args:
                print(f"  WARN {product} has no subcommand `{args[0]}` yet: checking against all its subcommands")
            return set().union(*subs.values()), f"{product} (any subcommand)"
        return accepted.get(product, set()), product

    examples = {}
    for path in a.secret_example:
        for obj in load_objects(path):
            if obj.get("kind") == "Secret":
                examples[obj["metadata"]["name"]] = (path, obj)

    for path in a.rendered:
        objects = load_objects(path)
        by_name = {(o.get("kind"), o.get("metadata", {}).get("name")): o for o in objects}

        def data_keys(kind: str, name: str) -> tuple[set[str], str] | None:
            obj = by_name.get((kind, name))
            if obj is not None:
                keys = set((obj.get("data") or {}).keys()) | set((obj.get("stringData") or {}).keys())
                return keys, f"{path}: {kind}/{name}"
            if kind == "Secret" and name in examples:
                epath, eobj = examples[name]
                return set((eobj.get("stringData") or {}).keys()) | set((eobj.get("data") or {}).keys()), \
                    f"{epath}: Secret/{name}"
            return None

        checked = 0
        for obj in objects:
            spec = pod_spec(obj)
            if not spec:
                continue
            for container in spec.get("initContainers", []) + spec.get("containers", []):
                product = image_repository(container.get("image", ""))
                if product not in products:
                    info(f"{path}: {object_name(obj)} container {container.get('name')}: image "
                         f"{container.get('image')} is not Squall's, skipped")
                    continue
                checked += 1
                allowed, who = accepted_by(product, container.get("args") or [])
                where = f"{path}: {object_name(obj)} container {container.get('name')}"
                given: list[tuple[str, str]] = []
                for env in container.get("env", []):
                    given.append((env["name"], "env"))
                    ref = (env.get("valueFrom") or {})
                    for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                        if key in ref and not ref[key].get("optional"):
                            found = data_keys(kind, ref[key]["name"])
                            if found is None:
                                fail(f"{where}: {env['name']} refers to {kind}/{ref[key]['name']}, which is neither "
                                     f"rendered nor in {', '.join(a.secret_example)}")
                            elif ref[key]["key"] not in found[0]:
                                fail(f"{where}: {env['name']} refers to key {ref[key]['key']} that {found[1]} lacks")
                for source in container.get("envFrom", []):
                    for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                        if key in source:
                            found = data_keys(kind, source[key]["name"])
                            if found is None:
                                fail(f"{where}: envFrom {kind}/{source[key]['name']} is neither rendered nor in "
                                     f"{', '.join(a.secret_example)}")
                                continue
                            given += [((source.get("prefix") or "") + k, found[1]) for k in sorted(found[0])]
                for name, origin in given:
                    if name not in allowed:
                        fail(f"{where}: sets {name} (from {origin}), which {who} does not read "
                             f"(not in its --help)")
                info(f"{where}: {len(given)} variables, all read by {who}" if not any(
                    n not in allowed for n, _ in given) else f"{where}: checked")
        if checked == 0:
            fail(f"{path}: no container runs a Squall image")

    for name, (epath, eobj) in examples.items():
        for key in sorted(set((eobj.get("stringData") or {}).keys()) | set((eobj.get("data") or {}).keys())):
            if key not in everything:
                fail(f"{epath}: Secret/{name} key {key} is not a variable any executable reads")

    dockerfile = parse_dockerfile(a.dockerfile)
    for product in products:
        stage = dockerfile.stage(docker_target(product))
        if stage is None:
            continue
        allowed, who = accepted_by(product, [])
        for name in stage_env(dockerfile, stage):
            if name not in allowed:
                fail(f"{a.dockerfile}: target {stage.name}: ENV {name}, which {who} does not read")
    return finish("environment variables")


def cmd_consistency(a: argparse.Namespace) -> int:
    """The health port agrees everywhere; the Consumer's grace fits; one autoscaler; one namespace."""
    dockerfile = parse_dockerfile(a.dockerfile)
    products = executable_products(a.package)
    for path in a.rendered:
        objects = load_objects(path)
        namespaces = {o["metadata"].get("namespace") for o in objects if o.get("kind") not in CLUSTER_SCOPED}
        if len(namespaces) != 1 or None in namespaces:
            for o in objects:
                if o.get("kind") not in CLUSTER_SCOPED and o["metadata"].get("namespace") != a.namespace:
                    fail(f"{path}: {object_name(o)} is in namespace {o['metadata'].get('namespace')!r}, "
                         f"not {a.namespace!r}")
        configmaps = {o["metadata"]["name"]: o.get("data") or {} for o in objects if o.get("kind") == "ConfigMap"}
        for obj in objects:
            if obj.get("kind") != "Deployment":
                continue
            spec = pod_spec(obj)
            for c in spec.get("containers", []):
                product = image_repository(c.get("image", ""))
                if product not in products:
                    continue
                where = f"{path}: {object_name(obj)}"
                port = None
                for source in c.get("envFrom", []):
                    if "configMapRef" in source:
                        port = configmaps.get(source["configMapRef"]["name"], {}).get("SQUALL_HTTP_PORT", port)
                for env in c.get("env", []):
                    if env["name"] == "SQUALL_HTTP_PORT" and "value" in env:
                        port = env["value"]
                if port is None:
                    fail(f"{where}: SQUALL_HTTP_PORT is not set, so the health endpoint is off")
                    continue
                http = [p for p in c.get("ports", []) if p.get("name") == "http"]
                if not http or str(http[0].get("containerPort")) != str(port):
                    fail(f"{where}: container port `http` is not SQUALL_HTTP_PORT {port}")
                for probe, expected in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                    got = ((c.get(probe) or {}).get("httpGet") or {})
                    if got.get("path") != expected or got.get("port") not in ("http", int(port), str(port)):
                        fail(f"{where}: {probe} is not GET {expected} on the http port")
                annotations = (obj["spec"]["template"].get("metadata") or {}).get("annotations") or {}
                if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != str(port):
                    fail(f"{where}: prometheus.io/scrape and prometheus.io/port {port} annotations missing")
                stage = dockerfile.stage(docker_target(product))
                if stage is not None and str(port) not in stage_exposed(dockerfile, stage):
                    fail(f"{a.dockerfile}: target {stage.name} does not EXPOSE {port} (SQUALL_HTTP_PORT in {where})")
                if product == "squall-consumer":
                    grace = spec.get("terminationGracePeriodSeconds", 30)
                    if grace <= CONSUMER_GRACE_SECONDS + 5:
                        fail(f"{where}: terminationGracePeriodSeconds {grace} leaves no margin over the Consumer's "
                             f"{CONSUMER_GRACE_SECONDS} s shutdown grace")
                    for kind in ("requests", "limits"):
                        if not (c.get("resources") or {}).get(kind, {}).get("memory"):
                            fail(f"{where}: no memory {kind} (sized from parts in flight x part size)")
        # Two autoscalers on one Deployment fight: KEDA's ScaledObject brings its own HPA.
        hpas = {(o["spec"]["scaleTargetRef"].get("kind"), o["spec"]["scaleTargetRef"]["name"]): o
                for o in objects if o.get("kind") == "HorizontalPodAutoscaler"}
        for o in objects:
            if o.get("kind") == "ScaledObject":
                ref = o["spec"]["scaleTargetRef"]
                clash = hpas.get((ref.get("kind", "Deployment"), ref["name"]))
                if clash is not None:
                    fail(f"{path}: {object_name(o)} and {object_name(clash)} both scale {ref['name']}")
        info(f"{path}: ports, probes, annotations, grace, autoscalers and namespace checked")
    return finish("consistency")


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        if pat.startswith("**/"):
            matches = any(fnmatch.fnmatchcase(c.rsplit("/", 1)[-1], pat[3:]) or fnmatch.fnmatchcase(c, pat[3:])
                          for c in candidates)
        else:
            matches = any(fnmatch.fnmatchcase(c, pat) for c in candidates)
        if matches:
            excluded = not negate
    return excluded


def cmd_copies(a: argparse.Namespace) -> int:
    """Every COPY/ADD source from the build context exists and is not excluded by .dockerignore."""
    dockerfile = parse_dockerfile(a.dockerfile)
    ignore = Path(a.dockerignore)
    patterns = [l.strip() for l in ignore.read_text().splitlines()
                if l.strip() and not l.strip().startswith("#")] if ignore.exists() else []
    count = 0
    for stage in dockerfile.stages:
        for number, instruction, rest in stage.instructions:
            if instruction not in ("COPY", "ADD"):
                continue
            words = rest.split()
            if any(w.startswith("--from=") for w in words):
                continue
            sources = [w for w in words if not w.startswith("--")][:-1]
            for source in sources:
                count += 1
                if not (Path(a.context) / source).exists():
                    fail(f"{a.dockerfile}:{number}: COPY source {source} does not exist in {a.context}")
                elif dockerignore_excludes(patterns, source):
                    fail(f"{a.dockerfile}:{number}: COPY source {source} is excluded by {a.dockerignore}")
    info(f"{a.dockerfile}: {count} COPY sources exist and are in the build context")
    return finish("Dockerfile COPY sources")


def cmd_packages(a: argparse.Namespace) -> int:
    """Every apt package the Dockerfile installs has a candidate in this machine's (bookworm) apt sources."""
    dockerfile = parse_dockerfile(a.dockerfile)
    for stage in dockerfile.stages:
        packages = apt_packages(stage)
        if not packages:
            continue
        info(f"stage {stage.name} (FROM {stage.base}): {' '.join(packages)}")
        for package in packages:
            result = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True)
            candidate = re.search(r"Candidate:\s*(\S+)", result.stdout)
            if not candidate or candidate.group(1) == "(none)":
                fail(f"{a.dockerfile}:{stage.line}: stage {stage.name}: package {package} has no candidate in "
                     f"bookworm (apt-cache policy {package})")
            else:
                info(f"{package}: {candidate.group(1)}")
    return finish("apt packages")


def cmd_linked(a: argparse.Namespace) -> int:
    """The C libraries each binary links come from its runtime stage's packages (or the slim base)."""
    dockerfile = parse_dockerfile(a.dockerfile)
    for product in executable_products(a.package):
        stage = dockerfile.stage(docker_target(product))
        binary = Path(a.bin_dir) / product
        if stage is None or not binary.exists():
            fail(f"{binary}: missing (or no Dockerfile target), cannot check its libraries")
            continue
        installed = set(BASE_IMAGE_PACKAGES)
        for s in dockerfile.chain(stage):
            installed |= set(apt_packages(s))
        ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
        needed = []
        for line in ldd.splitlines():
            m = re.match(r"\s*(\S+)\s+=>\s+(\S+)", line)
            if not m:
                continue
            soname, resolved = m.groups()
            if resolved == "not":
                fail(f"{binary}: {soname} is not found on this machine")
                continue
            if "/swift" in resolved or resolved.startswith(a.bin_dir):
                continue  # The Swift runtime: linked statically into the release images.
            # Only direct dependencies: indirect ones come with the packages that need them.
            needed.append((soname, resolved))
        direct = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                                subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True).stdout))
        for soname, resolved in needed:
            if soname not in direct:
                continue
            owner = subprocess.run(["dpkg", "-S", os.path.realpath(resolved)], capture_output=True, text=True)
            if owner.returncode != 0:
                owner = subprocess.run(["dpkg", "-S", resolved], capture_output=True, text=True)
            package = owner.stdout.split(":", 1)[0].strip() if owner.returncode == 0 else None
            if package is None:
                fail(f"{binary}: {soname} ({resolved}) belongs to no Debian package")
            elif package not in installed:
                fail(f"{a.dockerfile}: target {stage.name}: {product} links {soname} from package {package}, "
                     f"which the image does not install")
            else:
                info(f"{product}: {soname} ← {package}")
    return finish("linked libraries")


def cmd_image(a: argparse.Namespace) -> int:
    """Plays each runtime target in a bookworm root made by debootstrap: its RUN lines, its COPY of the
    binary, then its ENTRYPOINT with --help as its USER and with its ENV. What a `docker build` and
    `docker run --help` would do, short of the base image's exact contents."""
    dockerfile = parse_dockerfile(a.dockerfile)
    root = Path(a.root)
    done: set[int] = set()
    for product in executable_products(a.package):
        stage = dockerfile.stage(docker_target(product))
        if stage is None:
            fail(f"{a.dockerfile}: no target for {product}")
            continue
        chain = list(reversed(dockerfile.chain(stage)))
        user, entrypoint, cmd = "0:0", None, []
        for s in chain:
            for number, instruction, rest in s.instructions:
                if instruction == "RUN" and id(s) not in done:
                    info(f"{s.name}: RUN (line {number}) in {root}")
                    result = subprocess.run(["chroot", str(root), "/bin/sh", "-c", rest], capture_output=True, text=True)
                    if result.returncode != 0:
                        print(result.stdout[-2000:], result.stderr[-2000:])
                        fail(f"{a.dockerfile}:{number}: stage {s.name}: RUN failed ({result.returncode})")
                elif instruction == "COPY" and rest.startswith("--from=build"):
                    source, destination = rest.split()[1:3]
                    built = Path(a.dist) / Path(source).name
                    target = root / destination.lstrip("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    subprocess.run(["cp", str(built), str(target)], check=True)
                elif instruction == "USER":
                    user = rest if ":" in rest else rest + ":" + rest
                elif instruction == "ENTRYPOINT":
                    entrypoint = exec_form(rest)
                elif instruction == "CMD":
                    cmd = exec_form(rest) or []
            done.add(id(s))
        if not entrypoint:
            fail(f"{a.dockerfile}: target {stage.name}: no exec-form ENTRYPOINT")
            continue
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **stage_env(dockerfile, stage)}
        result = subprocess.run(["chroot", f"--userspec={user}", str(root), *entrypoint, "--help"],
                                env=env, capture_output=True, text=True)
        if result.returncode != 0 or "USAGE:" not in result.stdout:
            fail(f"target {stage.name}: `{' '.join(entrypoint)} --help` as {user} exited {result.returncode}: "
                 f"{(result.stderr or result.stdout).strip()[:300]}")
        else:
            info(f"target {stage.name}: {' '.join(entrypoint)} --help runs as {user} with "
                 f"{' '.join(f'{k}={v}' for k, v in stage_env(dockerfile, stage).items())}")
    return finish("runtime images (debootstrap)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate")
    p.add_argument("--schemas", required=True)
    p.add_argument("--k8s-version", action="append", required=True)
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("products")
    p.add_argument("--package", required=True)
    p.add_argument("--dockerfile", required=True)
    p.add_argument("rendered", nargs="+")
    p.set_defaults(func=cmd_products)

    p = sub.add_parser("env")
    p.add_argument("--package", required=True)
    p.add_argument("--dockerfile", required=True)
    p.add_argument("--help-dir", required=True)
    p.add_argument("--secret-example", action="append", default=[])
    p.add_argument("rendered", nargs="+")
    p.set_defaults(func=cmd_env)

    p = sub.add_parser("consistency")
    p.add_argument("--package", required=True)
    p.add_argument("--dockerfile", required=True)
    p.add_argument("--namespace", default="squall")
    p.add_argument("rendered", nargs="+")
    p.set_defaults(func=cmd_consistency)

    p = sub.add_parser("copies")
    p.add_argument("--dockerfile", required=True)
    p.add_argument("--dockerignore", required=True)
    p.add_argument("--context", required=True)
    p.set_defaults(func=cmd_copies)

    p = sub.add_parser("packages")
    p.add_argument("--dockerfile", required=True)
    p.set_defaults(func=cmd_packages)

    p = sub.add_parser("linked")
    p.add_argument("--package", required=True)
    p.add_argument("--dockerfile", required=True)
    p.add_argument("--bin-dir", required=True)
    p.set_defaults(func=cmd_linked)

    p = sub.add_parser("image")
    p.add_argument("--package", required=True)
    p.add_argument("--dockerfile", required=True)
    p.add_argument("--dist", required=True)
    p.add_argument("--root", required=True)
    p.set_defaults(func=cmd_image)

    a = parser.parse_args()
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
