#!/usr/bin/env python3
"""Static checks of terraform/ (run by scripts/check-terraform.sh, with python-hcl2 installed).

1. Every .tf file parses, and every variable and output has a description.
2. Every environment variable terraform sets for a container is one the container's binary
   accepts: the names of each ECS container's `environment` and `secrets` are checked against
   the `--help` of the command the container runs (`tenant-router --help`,
   `tenantctl serve --help`, `tenantctl clusters add --help`, ...), which lists every
   setting as `[env: NAME...]`. Values the binary hides in its help (`[env: NAME]`, no `=`:
   URLs with passwords, signing secrets) must come from Secrets Manager, SECRETS_BACKEND must be
   `aws` and DATABASE_URL must be a secret.

Every ECS task definition is made by modules/task-definition; its callers' `command`,
`environment` and `secrets` are followed up through the module calls to the environment root
modules, through `local.*`, `var.*` (a caller's argument, else the variable's default),
`merge(...)`, object literals and `cond ? a : b` (both branches). Anything else fails: the
check never guesses.

Usage: check_terraform.py TERRAFORM_DIR --tenantctl PATH --tenant-router PATH
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hcl2
from hcl2.utils import SerializationOptions

OPTIONS = SerializationOptions(strip_string_quotes=True, with_comments=False)
TASK_DEFINITION_MODULE = "modules/task-definition"
# The servers the environments must run; each environment is checked to have both.
SERVERS = (("tenant-router",), ("tenantctl", "serve"))


class CheckError(Exception):
    pass


# ------------------------------------------------------------------------------ loading ---


@dataclass
class ModuleCall:
    name: str
    directory: Path  # where the call is written
    source: Path  # the called module's directory
    args: dict


@dataclass
class ModuleDir:
    path: Path
    locals: dict = field(default_factory=dict)
    variables: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)
    task_definitions: list = field(default_factory=list)  # (file, name)


def load_all(root: Path) -> tuple[dict[Path, ModuleDir], list[str]]:
    """Parses every .tf file under root; returns the modules by directory and parse errors."""
    dirs: dict[Path, ModuleDir] = {}
    errors = []
    files = sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)
    if not files:
        errors.append(f"no .tf files under {root}")
    for path in files:
        try:
            with path.open(encoding="utf-8") as f:
                doc = hcl2.load(f, serialization_options=OPTIONS)
        except Exception as e:  # the parser raises several exception types
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            errors.append(f"{rel(path, root)}: does not parse: {first_line}")
            continue
        module = dirs.setdefault(path.parent, ModuleDir(path.parent))
        for block in doc.get("locals", []):
            module.locals.update(unquote_keys(block))
        for kind in ("variable", "output"):
            for block in doc.get(kind, []):
                for name, body in block.items():
                    if name.startswith("__"):
                        continue
                    if kind == "variable":
                        module.variables[unquote(name)] = body
                    if not (isinstance(body.get("description"), str) and body["description"].strip()):
                        errors.append(f"{rel(path, root)}: {kind} {unquote(name)} has no description")
        for block in doc.get("module", []):
            for name, body in block.items():
                source = body.get("source")
                if isinstance(source, str) and source.startswith("."):
                    module.calls.append(ModuleCall(unquote(name), path.parent, (path.parent / source).resolve(), body))
        for block in doc.get("resource", []):
            for rtype, instances in block.items():
                if unquote(rtype) == "aws_ecs_task_definition":
                    for name in instances:
                        module.task_definitions.append((path, unquote(name)))
    return dirs, errors


def unquote(s):
    return s[1:-1] if isinstance(s, str) and len(s) >= 2 and s[0] == s[-1] == '"' else s


def unquote_keys(d: dict) -> dict:
    return {unquote(k): v for k, v in d.items() if not k.startswith("__")}


def rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.parent))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------ expression resolution ---


@dataclass(frozen=True)
class Context:
    """Where an expression is evaluated: a module directory and the chain of calls to it."""

    directory: Path
    chain: tuple  # of ModuleCall, outermost first; the last one instantiates `directory`


def split_top(text: str, separators: str) -> list[tuple[str, str]]:
    """Splits text at top-level separator characters (outside brackets and strings).
    Returns (piece, separator that ended it or '')."""
    out, depth, start, i, in_string = [], 0, 0, 0, False
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and c in separators:
            out.append((text[start:i], c))
            start = i + 1
        i += 1
    out.append((text[start:], ""))
    return out


def interpolation(value):
    """The expression of a value that is exactly one `${...}`, else None."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        inner = value[2:-1]
        # "${a}-${b}" is a template, not one expression
        if len(split_top(inner, "}")) == 1:
            return inner.strip()
    return None


class Resolver:
    def __init__(self, dirs: dict[Path, ModuleDir], root: Path):
        self.dirs = dirs
        self.root = root

    def where(self, ctx: Context) -> str:
        parts = [rel(ctx.chain[0].directory, self.root)] if ctx.chain else [rel(ctx.directory, self.root)]
        parts += [f"module.{call.name}" for call in ctx.chain]
        return " > ".join(parts)

    def fail(self, ctx: Context, what: str, expr) -> CheckError:
        return CheckError(
            f"{self.where(ctx)}: cannot resolve {what} `{expr}` (use a map literal, local.NAME, "
            f"var.NAME, merge(...) or tomap(...) of those, or `cond ? a : b`)"
        )

    def reference(self, ref: str, ctx: Context, what: str):
        """The value of local.NAME or var.NAME, with the context it must be evaluated in."""
        kind, _, name = ref.partition(".")
        module = self.dirs[ctx.directory]
        if kind == "local" and name in module.locals:
            return module.locals[name], ctx
        if kind == "var" and name in module.variables:
            if ctx.chain and name in ctx.chain[-1].args:
                call = ctx.chain[-1]
                return call.args[name], Context(call.directory, ctx.chain[:-1])
            default = module.variables[name].get("default")
            if "default" in module.variables[name] and default is not None:
                return default, ctx
            if "default" in module.variables[name]:
                return {} if what != "command" else [], ctx
            raise CheckError(f"{self.where(ctx)}: variable {name} is neither passed nor has a default")
        raise self.fail(ctx, what, ref)

    def mapping(self, value, ctx: Context, what: str) -> dict:
        """Resolves an environment or secrets value to {name: value expression}."""
        if isinstance(value, dict):
            return unquote_keys(value)
        expr = interpolation(value)
        if expr is None:
            raise self.fail(ctx, what, value)
        return self.mapping_expr(expr, ctx, what)

    def mapping_expr(self, expr: str, ctx: Context, what: str) -> dict:
        expr = expr.strip()
        while expr.startswith("(") and expr.endswith(")") and len(split_top(expr[1:-1], ")")) == 1:
            expr = expr[1:-1].strip()
        # cond ? a : b -> the names of both branches
        question = split_top(expr, "?")
        if len(question) == 2:
            branches = split_top(question[1][0], ":")
            if len(branches) != 2:
                raise self.fail(ctx, what, expr)
            result = {}
            for branch, _ in branches:
                result.update(self.mapping_expr(branch, ctx, what))
            return result
        if re.fullmatch(r"(local|var)\.[A-Za-z0-9_-]+", expr):
            value, where = self.reference(expr, ctx, what)
            return self.mapping(value, where, what)
        match = re.fullmatch(r"tomap\((.*)\)", expr, re.DOTALL)
        if match and len(split_top(match.group(1), ",")) == 1:
            return self.mapping_expr(match.group(1), ctx, what)
        match = re.fullmatch(r"merge\((.*)\)", expr, re.DOTALL)
        if match:
            result = {}
            for arg, _ in split_top(match.group(1), ","):
                if arg.strip():
                    result.update(self.mapping_expr(arg, ctx, what))
            return result
        if expr.startswith("{") and expr.endswith("}"):
            try:
                parsed = hcl2.loads(f"x = {expr}\n", serialization_options=OPTIONS)["x"]
            except Exception as e:
                raise self.fail(ctx, what, expr) from e
            if isinstance(parsed, dict):
                return unquote_keys(parsed)
        raise self.fail(ctx, what, expr)

    def words(self, value, ctx: Context) -> list[str]:
        """The binary and subcommands of a command: its leading literal words up to the first
        flag or expression."""
        expr = interpolation(value)
        if expr is not None:
            if re.fullmatch(r"(local|var)\.[A-Za-z0-9_-]+", expr):
                value, where = self.reference(expr, ctx, "command")
                return self.words(value, where)
            raise self.fail(ctx, "command", value)
        if not isinstance(value, list) or not value:
            raise self.fail(ctx, "command", value)
        words = []
        for word in value:
            if not isinstance(word, str) or word.startswith("-") or "${" in word:
                break
            words.append(word)
        if not words:
            raise self.fail(ctx, "command", value)
        return words

    def literal(self, value, ctx: Context):
        """A plain string value (following local/var references), or None."""
        expr = interpolation(value)
        if expr is None:
            return value if isinstance(value, str) else None
        if re.fullmatch(r"(local|var)\.[A-Za-z0-9_-]+", expr):
            try:
                inner, where = self.reference(expr, ctx, "value")
            except CheckError:
                return None
            return self.literal(inner, where)
        return None


# ------------------------------------------------------------------------------ checking ---


@dataclass
class Container:
    where: str
    root: Path
    words: list
    environment: dict
    secrets: dict


def chains_to(directory: Path, dirs: dict[Path, ModuleDir], seen=()) -> list[tuple]:
    """Every chain of module calls from a root module down to `directory` (outermost first)."""
    callers = [call for module in dirs.values() for call in module.calls if call.source == directory]
    if not callers:
        return [()]
    chains = []
    for call in callers:
        if call.directory in seen:
            raise CheckError(f"module call cycle through {call.directory}")
        for chain in chains_to(call.directory, dirs, seen + (directory,)):
            chains.append(chain + (call,))
    return chains


def containers(dirs: dict[Path, ModuleDir], root: Path) -> list[Container]:
    task_module = (root / TASK_DEFINITION_MODULE).resolve()
    errors = []
    for module in dirs.values():
        for path, name in module.task_definitions:
            if module.path.resolve() != task_module:
                errors.append(
                    f"{rel(path, root)}: aws_ecs_task_definition.{name} is outside {TASK_DEFINITION_MODULE}; "
                    f"make task definitions with that module so their environment can be checked"
                )
    if task_module not in dirs:
        errors.append(f"{TASK_DEFINITION_MODULE} is missing")
    else:
        errors += check_task_module(dirs[task_module], root)
    if errors:
        raise CheckError("\n".join(errors))

    resolver = Resolver(dirs, root)
    found = []
    for chain in chains_to(task_module, dirs):
        if not chain:
            raise CheckError(f"{TASK_DEFINITION_MODULE} is not used by any module")
        site = chain[-1]
        ctx = Context(site.directory, chain[:-1])
        where = resolver.where(Context(task_module, chain))
        if chain[0].directory.resolve().is_relative_to((root / "modules").resolve()):
            raise CheckError(
                f"{where}: this chain starts in a module nobody calls; call it from an environment "
                f"so the names it sets can be checked"
            )
        args = site.args
        words = resolver.words(args.get("command"), ctx)
        environment = resolver.mapping(args.get("environment", {}), ctx, "environment") if "environment" in args else {}
        secrets = resolver.mapping(args.get("secrets", {}), ctx, "secrets") if "secrets" in args else {}
        environment = {k: resolver.literal(v, ctx) for k, v in environment.items()}
        found.append(Container(where, chain[0].directory, words, environment, secrets))
    return found


def check_task_module(module: ModuleDir, root: Path) -> list[str]:
    """The task-definition module must take command, environment and secrets from its
    variables only, so that following its callers sees every name."""
    container = module.locals.get("container")
    expected = {
        "command": "${var.command}",
        "environment": "var.environment",
        "secrets": "var.secrets",
    }
    if not isinstance(container, dict):
        return [f"{rel(module.path, root)}: expected local.container (the container definition)"]
    errors = []
    for key, needle in expected.items():
        value = container.get(key)
        if not isinstance(value, str) or needle not in value or re.search(r'\bname\s*=\s*"', value):
            errors.append(
                f"{rel(module.path, root)}: local.container.{key} must come from var.{key} only (got {value!r})"
            )
    return errors


HELP_ENV = re.compile(r"\[env: ([A-Z][A-Z0-9_]*)(=?)")


def help_names(binaries: dict[str, str], words: list[str], cache: dict) -> dict[str, bool]:
    """{NAME: value hidden in the help} for a command."""
    key = tuple(words)
    if key in cache:
        return cache[key]
    binary = binaries.get(words[0])
    if binary is None:
        raise CheckError(f"unknown binary {words[0]!r} (known: {', '.join(sorted(binaries))})")
    argv = [binary, *words[1:], "--help"]
    # An empty environment: clap prints the current value of a set variable in the help.
    result = subprocess.run(argv, check=False, capture_output=True, text=True, env={"PATH": os.defpath}, timeout=60)
    if result.returncode != 0:
        raise CheckError(f"`{' '.join([words[0], *words[1:], '--help'])}` failed: {result.stderr.strip()}")
    names = {m.group(1): m.group(2) == "" for m in HELP_ENV.finditer(result.stdout)}
    if not names:
        raise CheckError(f"`{' '.join(words)} --help` lists no [env: ...] names")
    cache[key] = names
    return names


def check_names(found: list[Container], binaries: dict[str, str], root: Path) -> list[str]:
    errors, cache = [], {}
    for c in found:
        command = " ".join(c.words)
        accepted = help_names(binaries, c.words, cache)
        for kind, names in (("environment", c.environment), ("secrets", c.secrets)):
            for name in sorted(names):
                if name not in accepted:
                    errors.append(
                        f"{c.where}: {kind} variable {name} is not accepted by `{command}` "
                        f"(`{command} --help` does not list it)"
                    )
        for name in sorted(set(c.environment) & set(c.secrets)):
            errors.append(f"{c.where}: {name} is set both as a plain variable and as a secret")
        for name in sorted(c.environment):
            if accepted.get(name):
                errors.append(
                    f"{c.where}: {name} holds a secret (`{command} --help` hides its value); "
                    f"inject it from Secrets Manager (secrets), not environment"
                )
        if "DATABASE_URL" not in c.secrets:
            errors.append(f"{c.where}: `{command}` needs DATABASE_URL, from a secret")
        if c.environment.get("SECRETS_BACKEND") != "aws":
            errors.append(f"{c.where}: `{command}` must run with SECRETS_BACKEND=aws (Secrets Manager)")
    roots = sorted({c.root for c in found})
    for environment in roots:
        for server in SERVERS:
            if not any(c.root == environment and tuple(c.words) == server for c in found):
                errors.append(f"{rel(environment, root)}: no container runs `{' '.join(server)}`")
    if not roots:
        errors.append("no environment defines a container")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("terraform_dir", type=Path)
    parser.add_argument("--tenantctl", required=True, help="path of the tenantctl binary")
    parser.add_argument("--tenant-router", required=True, help="path of the tenant-router binary")
    parser.add_argument("--verbose", action="store_true", help="print every container and its names")
    args = parser.parse_args()
    root = args.terraform_dir.resolve()

    dirs, parse_errors = load_all(root)
    if parse_errors:
        print("terraform: files that do not parse or lack descriptions:", *parse_errors, sep="\n  ", file=sys.stderr)
        return 1
    try:
        found = containers(dirs, root)
        errors = check_names(found, {"tenantctl": args.tenantctl, "tenant-router": args.tenant_router}, root)
    except CheckError as e:
        errors = str(e).splitlines()
    if errors:
        print("terraform: container configuration names:", *errors, sep="\n  ", file=sys.stderr)
        return 1
    if args.verbose:
        for c in found:
            print(f"{c.where}: `{' '.join(c.words)}`")
            print("  environment:", " ".join(sorted(c.environment)))
            print("  secrets:    ", " ".join(sorted(c.secrets)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
