#!/usr/bin/env python3
"""Type-checks the Rust that Soong would compile for the Android build, without an AOSP tree.

For each Rust module of the Android.bp files it writes a cargo package the way Soong builds
the module: the crate root from `srcs`, `crate_name`, `edition`, the module's `features`
turned on, and one dependency per `rustlibs` entry under the crate name Soong gives it
(`aliases` included). Those dependencies are:
  - libbinder_rs            -> tools/android-check/libbinder-api (AOSP's API, declared);
  - <aidl_interface>-V<n>-rust -> the public API AOSP's AIDL Rust backend generates from the
                               .aidl files (tools/android-check/aidl_rust_api.py);
  - modules of this project -> their own generated packages (same rules, recursively);
  - AOSP's external/rust crates (liblibc, libnix, ...) -> the same crates from crates.io, at
    the versions of this repository's Cargo.lock.
Then `cargo clippy` type-checks them all with Soong's lints for vendor code (warnings are
errors). Code behind `feature = "android"` that calls an rsbinder-only API, misspells a
libbinder_rs name, passes the wrong types or leaves a warning fails here.

What this cannot see: libbinder_rs behaviour (nothing is run), the API of other Android
releases than the one declared (Android 15), and AOSP crate versions that differ from the
ones on crates.io.

Usage: check_android_rust.py [REPO_ROOT]      check every Rust module (exit 1 on failure)
       check_android_rust.py --self-test      show that a wrong call fails the check
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_android  # noqa: E402  (the Blueprint parser and the AOSP crate table)

HERE = os.path.dirname(os.path.abspath(__file__))
RUST_MODULES = ("rust_library", "rust_library_rlib", "rust_ffi_shared", "rust_ffi_static",
                "rust_ffi", "rust_binary", "rust_test")
# Crates.io versions for AOSP crates the cargo workspace does not use itself (Soong-only
# dependencies); pinned like every pre-1.0 crate.
EXTRA_CRATES = {"android_logger": '"=0.13.3"'}


def toml_str(s):
    return json.dumps(s)


class Workspace:
    def __init__(self, root, out):
        self.root = root
        self.out = out
        self.modules = {}  # name -> (type, resolved props, dir)
        self.aidl = {}  # generated module name -> (aidl_interface dir, srcs)
        self.packages = {}  # module name -> package name
        self.problems = []
        with open(os.path.join(root, "Cargo.toml"), "rb") as f:
            self.ws_deps = tomllib.load(f).get("workspace", {}).get("dependencies", {})
        self.crate_for = {v: k for k, v in check_android.AOSP_RUST_CRATES.items()
                          if v and v != "libbinder_rs" and v.startswith("lib")}

    def load(self):
        raw = {}
        for bp in sorted(glob.glob(os.path.join(self.root, "**", "Android.bp"), recursive=True)):
            rel = os.path.relpath(bp, self.root)
            if rel.startswith("target/") or "/target/" in rel:
                continue
            with open(bp) as f:
                for mtype, props in check_android.parse_blueprint(f.read(), rel):
                    if "name" in props:
                        raw[props["name"]] = (mtype, props, os.path.dirname(rel))
        checker = check_android.Checker(self.root)
        for name, (mtype, props, d) in raw.items():
            resolved = checker.resolve(raw, name)
            self.modules[name] = (mtype, resolved, d)
            if mtype == "aidl_interface":
                srcs = [p for s in props.get("srcs", []) for p in glob.glob(os.path.join(self.root, d, s))]
                versions = [v["version"] for v in props.get("versions_with_info", [])] or ["1"]
                for v in versions:
                    self.aidl[f"{name}-V{v}-rust"] = (name, srcs)

    def crate_spec(self, crate, module_dir):
        """The cargo dependency spec of an AOSP crate, as this repository pins it."""
        spec = self.ws_deps.get(crate)
        if spec is None:
            cargo = os.path.join(self.root, module_dir, "Cargo.toml")
            if os.path.exists(cargo):
                with open(cargo, "rb") as f:
                    data = tomllib.load(f)
                for table in ("dependencies", "dev-dependencies"):
                    spec = spec or data.get(table, {}).get(crate)
        if spec is None and crate in EXTRA_CRATES:
            return EXTRA_CRATES[crate]
        if spec is None:
            return None
        if isinstance(spec, str):
            return toml_str(spec)
        parts = []
        for k in ("version", "default-features", "features"):
            if k in spec:
                v = spec[k]
                parts.append(f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}")
        return "{ " + ", ".join(parts) + " }"

    def dep_line(self, lib, alias_of, module_name, module_dir):
        """One `[dependencies]` line for a Soong rustlib, or None (a problem is recorded)."""
        if lib == "libbinder_rs":
            return f'binder = {{ path = {toml_str(os.path.join(self.out, "binder"))} }}'
        if lib in self.aidl:
            pkg = self.aidl_package(lib)
            crate = pkg.replace("-", "_")
            key = alias_of.get(crate, crate)
            return f'{key} = {{ package = {toml_str(pkg)}, path = {toml_str(os.path.join(self.out, pkg))} }}'
        if lib in self.modules and self.modules[lib][0] in RUST_MODULES:
            pkg = self.module_package(lib)
            crate = self.modules[lib][1].get("crate_name", lib)
            key = alias_of.get(crate, crate)
            return f'{key} = {{ package = {toml_str(pkg)}, path = {toml_str(os.path.join(self.out, pkg))} }}'
        crate = self.crate_for.get(lib)
        if crate:
            spec = self.crate_spec(crate, module_dir)
            if spec:
                key = alias_of.get(crate.replace("-", "_"), crate)
                if key != crate:
                    return f'{key} = {{ package = {toml_str(crate)}, ' + spec.strip("{} ") + " }" \
                        if spec.startswith("{") else f'{key} = {{ package = {toml_str(crate)}, version = {spec} }}'
                return f"{crate} = {spec}"
        self.problems.append(f"{module_name}: rustlib {lib} has no crate to stand for it")
        return None

    def aidl_package(self, lib):
        if lib in self.packages:
            return self.packages[lib]
        iface, srcs = self.aidl[lib]
        pkg = iface.replace(".", "_")
        pdir = os.path.join(self.out, pkg)
        os.makedirs(os.path.join(pdir, "src"), exist_ok=True)
        gen = subprocess.run([sys.executable, os.path.join(HERE, "aidl_rust_api.py"),
                              os.path.join(pdir, "src", "lib.rs"), *srcs], capture_output=True, text=True)
        if gen.returncode != 0:
            self.problems.append(f"{lib}: {gen.stderr.strip()}")
        with open(os.path.join(pdir, "Cargo.toml"), "w") as f:
            f.write(f'[package]\nname = {toml_str(pkg)}\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
                    f'[dependencies]\nbinder = {{ path = {toml_str(os.path.join(self.out, "binder"))} }}\n')
        self.packages[lib] = pkg
        return pkg

    def module_package(self, name):
        if name in self.packages:
            return self.packages[name]
        mtype, props, d = self.modules[name]
        pkg = "soong-" + name.replace(".", "-").replace("_", "-")
        self.packages[name] = pkg
        pdir = os.path.join(self.out, pkg)
        os.makedirs(pdir, exist_ok=True)
        crate = props.get("crate_name", name)
        root_src = os.path.join(self.root, d, props.get("srcs", ["src/lib.rs"])[0])
        alias_of = dict(a.split(":") for a in props.get("aliases", []))
        deps = [self.dep_line(lib, alias_of, name, d) for lib in props.get("rustlibs", [])]
        features = props.get("features", [])
        lines = [f"[package]\nname = {toml_str(pkg)}\nversion = \"0.0.0\"\n"
                 f"edition = {toml_str(props.get('edition', '2021'))}\npublish = false\nautobins = false\n"
                 "autotests = false\nautoexamples = false\nautobenches = false\n"]
        if mtype in ("rust_binary",):
            lines.append(f"[[bin]]\nname = {toml_str(crate)}\npath = {toml_str(root_src)}\ntest = false\n")
        elif mtype == "rust_test":
            harness = props.get("test_harness", True)
            lines.append(f"[[test]]\nname = {toml_str(crate)}\npath = {toml_str(root_src)}\n"
                         f"harness = {str(harness).lower()}\n")
        else:
            lines.append(f"[lib]\nname = {toml_str(crate)}\npath = {toml_str(root_src)}\ntest = false\ndoctest = false\n")
        lines.append("[features]\n" + "".join(f"{feat} = []\n" for feat in features)
                     + f"default = {json.dumps(features)}\n")
        lines.append("[dependencies]\n" + "".join(f"{dl}\n" for dl in deps if dl))
        with open(os.path.join(pdir, "Cargo.toml"), "w") as f:
            f.write("\n".join(lines))
        return pkg

    def write(self):
        if os.path.isdir(self.out):
            for entry in os.listdir(self.out):
                if entry != "target":
                    p = os.path.join(self.out, entry)
                    shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
        os.makedirs(self.out, exist_ok=True)
        shutil.copytree(os.path.join(HERE, "libbinder-api"), os.path.join(self.out, "binder"))
        checked = sorted(n for n, (t, _p, _d) in self.modules.items() if t in RUST_MODULES)
        for name in checked:
            self.module_package(name)
        members = sorted(os.path.relpath(os.path.join(self.out, p), self.out) for p in set(self.packages.values()))
        with open(os.path.join(self.out, "Cargo.toml"), "w") as f:
            f.write("# Generated by tools/android-check/check_android_rust.py: the Soong build as cargo packages.\n"
                    f"[workspace]\nresolver = \"2\"\nmembers = {json.dumps(members + ['binder'])}\n")
        lock = os.path.join(self.root, "Cargo.lock")
        if os.path.exists(lock):  # the same crate versions as the cargo build
            shutil.copy(lock, os.path.join(self.out, "Cargo.lock"))
        return checked


# Soong's lints for vendor code (build/soong/rust/config/lints.go: defaultRustcVendorLints,
# defaultClippyVendorLints): warnings are errors, deprecations allowed, and clippy runs with
# its complexity/perf/style groups allowed. `unexpected_cfgs` is allowed because it comes
# from cargo's --check-cfg (the cargo-only features of a crate), which Soong does not pass.
SOONG_VENDOR_LINTS = ("-A deprecated -D warnings -A unexpected_cfgs "
                      "-A clippy::complexity -A clippy::perf -A clippy::style")


def cargo_check(out, package, mtype):
    """Clippy (as Soong runs it) over one module's package: a test module with cfg(test)."""
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(out, "target"), RUSTFLAGS=SOONG_VENDOR_LINTS)
    target = {"rust_test": "--tests", "rust_binary": "--bins"}.get(mtype, "--lib")
    cmd = ["cargo", "clippy", "--quiet", "--message-format", "short", target, "-p", package]
    return subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)


def run(root):
    out = os.path.join(root, "target", "android-check")
    ws = Workspace(root, out)
    ws.load()
    checked = ws.write()
    ok = True
    for p in ws.problems:
        print(f"  FAILED: {p}")
        ok = False
    print(f"== cargo clippy (Soong vendor lints) of {len(checked)} Soong Rust modules against libbinder_rs's API")
    for name in checked:
        pkg = ws.packages[name]
        mtype, props, d = ws.modules[name]
        r = cargo_check(out, pkg, mtype)
        feats = props.get("features", [])
        what = f"{name} ({mtype}, {d}, features {feats})"
        if r.returncode == 0:
            print(f"  ok: {what}")
        else:
            ok = False
            print(f"  FAILED: {what}")
            errors = [l for l in r.stderr.splitlines() if l.strip()]
            for line in errors[:40]:
                print(f"      {line}")
    return ok


SELF_TEST_GOOD = """
pub fn caller() -> u32 { binder::ThreadState::get_calling_uid() }
pub fn status(code: i32) -> binder::Status {
    binder::Status::new_service_specific_error_str(code, Some("message"))
}
"""
# rsbinder spellings that libbinder_rs lacks: each must fail.
SELF_TEST_BAD = [
    "pub fn caller() -> u32 { binder::get_calling_uid() }",
    "pub fn status(code: i32) -> binder::Status {\n"
    "    binder::Status::new_service_specific_error(code, Some(\"m\".to_string()))\n}",
    "pub fn message(s: &binder::Status) -> String { s.message().unwrap_or_default().to_string() }",
    "pub fn dead(c: binder::StatusCode) -> bool { c == binder::StatusCode::DeadObject }",
    "pub fn init() { binder::ProcessState::init_default(); }",
]


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(os.path.join(HERE, "libbinder-api"), os.path.join(tmp, "binder"))
        crate = os.path.join(tmp, "probe")
        os.makedirs(os.path.join(crate, "src"))
        with open(os.path.join(crate, "Cargo.toml"), "w") as f:
            f.write('[package]\nname = "probe"\nversion = "0.0.0"\nedition = "2021"\n\n'
                    '[dependencies]\nbinder = { path = "../binder" }\n\n[workspace]\n')
        root_lock = os.path.join(HERE, "..", "..", "Cargo.lock")
        if os.path.exists(root_lock):
            shutil.copy(root_lock, os.path.join(crate, "Cargo.lock"))
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(tmp, "target"))

        def compiles(src):
            with open(os.path.join(crate, "src", "lib.rs"), "w") as f:
                f.write(src)
            return subprocess.run(["cargo", "check", "--quiet"], cwd=crate, env=env,
                                  capture_output=True, text=True).returncode == 0

        ok = compiles(SELF_TEST_GOOD)
        print(f"  self-test: AOSP spellings type-check: {ok}")
        for bad in SELF_TEST_BAD:
            rejected = not compiles(bad)
            print(f"  self-test: rejected `{bad.splitlines()[0][:70]}`: {rejected}")
            ok &= rejected
    return ok


def main():
    if sys.argv[1:] == ["--self-test"]:
        return 0 if self_test() else 1
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", ".."))
    ok = run(root)
    print("android-rust-check:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
