#!/usr/bin/env python3
"""Writes the public API of the crate Soong's AIDL Rust backend generates for an
aidl_interface (e.g. `vendor.dmaload-V1-rust`, crate `vendor_dmaload`), as declarations
against tools/android-check/libbinder-api, for type checks only.

The shape follows AOSP's generator (system/tools/aidl, generate_rust.cpp): the crate root
holds `pub mod aidl { pub mod <package...> { pub mod <Type> { ... } } }`; parcelables are
`#[derive(Debug)]` structs with `r#` fields and a Default impl; enums are i32 newtypes with
associated constants; interfaces are traits over `binder::Interface` whose methods return
`binder::Result<T>` (in-parameters: `&str`, `&[T]`, `&T`, `&binder::Strong<dyn I>`,
primitives by value), with a `BnFoo::new_binder(inner, BinderFeatures)` constructor.
Nullable fds and every fd field are `Option<binder::ParcelFileDescriptor>`.

Usage: aidl_rust_api.py OUT_RS AIDL_FILE...   (exit status 1 on syntax it does not know)
"""
import os
import re
import sys

PRIMITIVES = {"boolean": "bool", "byte": "i8", "char": "u16", "int": "i32", "long": "i64",
              "float": "f32", "double": "f64"}


class AidlError(Exception):
    pass


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def parse(path):
    text = strip_comments(open(path).read())
    pkg = re.search(r"\bpackage\s+([\w.]+)\s*;", text)
    if not pkg:
        raise AidlError(f"{path}: no package")
    body = re.sub(r"\bimport\s+[\w.]+\s*;", "", text[pkg.end():])
    body = re.sub(r"@\w+(\([^)]*\))?", lambda m: m.group(0) if m.group(0) == "@nullable" else "", body)
    m = re.match(r"\s*(oneway\s+)?(parcelable|enum|interface)\s+(\w+)\s*\{(.*)\}\s*$", body, re.S)
    if not m:
        raise AidlError(f"{path}: not a parcelable, enum or interface this tool knows")
    oneway, kind, name, inner = m.groups()
    decl = {"package": pkg.group(1), "kind": kind, "name": name, "oneway": bool(oneway)}
    if kind == "enum":
        items = [i.strip() for i in inner.split(",") if i.strip()]
        decl["values"] = []
        for i in items:
            em = re.fullmatch(r"(\w+)\s*=\s*(-?\d+)", i)
            if not em:
                raise AidlError(f"{path}: enum item {i!r} needs an explicit value")
            decl["values"].append((em.group(1), int(em.group(2))))
    elif kind == "parcelable":
        decl["fields"] = []
        for f in [s.strip() for s in inner.split(";") if s.strip()]:
            fm = re.fullmatch(r"(@nullable\s+)?([\w.]+)(\[\])?\s+(\w+)(\s*=\s*(.+))?", f, re.S)
            if not fm:
                raise AidlError(f"{path}: field {f!r}")
            decl["fields"].append({"nullable": bool(fm.group(1)), "type": fm.group(2),
                                   "array": bool(fm.group(3)), "name": fm.group(4),
                                   "default": fm.group(6)})
    else:
        decl["methods"] = []
        for meth in [s.strip() for s in inner.split(";") if s.strip()]:
            mm = re.fullmatch(r"(@nullable\s+)?([\w.]+)(\[\])?\s+(\w+)\s*\((.*)\)", meth, re.S)
            if not mm:
                raise AidlError(f"{path}: method {meth!r}")
            args = []
            for a in [x.strip() for x in mm.group(5).split(",") if x.strip()]:
                am = re.fullmatch(r"(in\s+|out\s+|inout\s+)?(@nullable\s+)?([\w.]+)(\[\])?\s+(\w+)", a)
                if not am or (am.group(1) or "in ").strip() != "in":
                    raise AidlError(f"{path}: argument {a!r} (only `in` arguments are known)")
                args.append({"nullable": bool(am.group(2)), "type": am.group(3),
                             "array": bool(am.group(4)), "name": am.group(5)})
            decl["methods"].append({"ret": mm.group(2), "ret_array": bool(mm.group(3)),
                                    "ret_nullable": bool(mm.group(1)), "name": mm.group(4),
                                    "args": args})
    return decl


def rust_type(t, kinds, array=False, nullable=False, field=False):
    if t in PRIMITIVES:
        base = PRIMITIVES[t]
    elif t == "String":
        base = "String"
    elif t == "ParcelFileDescriptor":
        base = "binder::ParcelFileDescriptor"
        if field and not array:
            return f"Option<{base}>"
    elif t in kinds:
        base = f"super::{t}::{t}"
        if kinds[t] == "interface":
            base = f"binder::Strong<dyn super::{t}::{t}>"
            if field and not array:
                return f"Option<{base}>"
    else:
        raise AidlError(f"unknown type {t}")
    base = f"Vec<{base}>" if array else base
    return f"Option<{base}>" if nullable else base


def arg_type(a, kinds):
    t = a["type"]
    if a["array"]:
        inner = rust_type(t, kinds)
        return f"Option<&[{inner}]>" if a["nullable"] else f"&[{inner}]"
    if t in PRIMITIVES:
        return PRIMITIVES[t]
    if t == "String":
        return "Option<&str>" if a["nullable"] else "&str"
    inner = rust_type(t, kinds)
    return f"Option<&{inner}>" if a["nullable"] else f"&{inner}"


def default_value(f, kinds):
    d = f["default"]
    if d is None:
        return "Default::default()"
    d = d.strip()
    if d.startswith('"'):
        return f"{d}.into()"
    em = re.fullmatch(r"(\w+)\.(\w+)", d)
    if em and kinds.get(em.group(1)) == "enum":
        return f"super::{em.group(1)}::{em.group(1)}::r#{em.group(2)}"
    if re.fullmatch(r"-?\d+|true|false", d):
        return d
    raise AidlError(f"default {d!r} of {f['name']}")


SERDE = """
        impl binder::binder_impl::Serialize for {n} {{
            fn serialize(&self, _parcel: &mut binder::binder_impl::BorrowedParcel<'_>) -> std::result::Result<(), binder::StatusCode> {{
                unreachable!("declaration only")
            }}
        }}
        impl binder::binder_impl::Deserialize for {n} {{
            fn deserialize(_parcel: &binder::binder_impl::BorrowedParcel<'_>) -> std::result::Result<Self, binder::StatusCode> {{
                unreachable!("declaration only")
            }}
        }}"""


def emit(decl, kinds):
    n = decl["name"]
    out = [f"    pub mod {n} {{"]
    if decl["kind"] == "enum":
        out.append("        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]")
        out.append(f"        pub struct {n}(pub i32);")
        out.append(f"        impl {n} {{")
        for name, v in decl["values"]:
            out.append(f"            pub const r#{name}: Self = Self({v});")
        vals = ", ".join(f"Self::r#{name}" for name, _ in decl["values"])
        out.append(f"            pub fn enum_values() -> [Self; {len(decl['values'])}] {{ [{vals}] }}")
        out.append("        }")
        out.append(SERDE.format(n=n))
    elif decl["kind"] == "parcelable":
        out.append("        #[derive(Debug)]")
        out.append(f"        pub struct {n} {{")
        for f in decl["fields"]:
            out.append(f"            pub r#{f['name']}: {rust_type(f['type'], kinds, f['array'], f['nullable'], field=True)},")
        out.append("        }")
        out.append(f"        impl Default for {n} {{")
        out.append("            fn default() -> Self {")
        out.append("                Self {")
        for f in decl["fields"]:
            out.append(f"                    r#{f['name']}: {default_value(f, kinds)},")
        out.append("                }\n            }\n        }")
        out.append(SERDE.format(n=n))
    else:
        short = n[1:] if n.startswith("I") else n
        desc = f"{decl['package']}.{n}"
        out.append(f"        pub trait {n}: binder::Interface + Send {{")
        out.append(f"            fn get_descriptor() -> &'static str where Self: Sized {{ \"{desc}\" }}")
        for m in decl["methods"]:
            args = "".join(f", _arg_{a['name']}: {arg_type(a, kinds)}" for a in m["args"])
            ret = "()" if m["ret"] == "void" else rust_type(m["ret"], kinds, m["ret_array"], m["ret_nullable"])
            out.append(f"            fn r#{m['name']}(&self{args}) -> binder::Result<{ret}>;")
        out.append("        }")
        out.append(f"""        impl binder::FromIBinder for dyn {n} {{
            fn try_from(_ibinder: binder::SpIBinder) -> std::result::Result<binder::Strong<dyn {n}>, binder::StatusCode> {{
                unreachable!("declaration only")
            }}
        }}
        /// The local (native) object.
        pub struct Bn{short}(Box<dyn {n} + Sync + Send + 'static>);
        impl Bn{short} {{
            pub fn new_binder<T: {n} + Sync + Send + 'static>(inner: T, _features: binder::BinderFeatures) -> binder::Strong<dyn {n}> {{
                let _ = Bn{short}(Box::new(inner));
                unreachable!("declaration only")
            }}
        }}
        impl binder::binder_impl::Remotable for Bn{short} {{
            fn get_descriptor() -> &'static str {{ "{desc}" }}
            fn get_class() -> binder::binder_impl::InterfaceClass {{ unreachable!("declaration only") }}
        }}
        /// The proxy.
        pub struct Bp{short}(binder::SpIBinder);""")
    out.append("    }")
    return "\n".join(out)


def main():
    out_path, files = sys.argv[1], sys.argv[2:]
    try:
        decls = [parse(f) for f in sorted(files)]
        pkgs = {d["package"] for d in decls}
        if len(pkgs) != 1:
            raise AidlError(f"one package per interface crate, got {sorted(pkgs)}")
        kinds = {d["name"]: d["kind"] for d in decls}
        body = "\n".join(emit(d, kinds) for d in decls)
    except AidlError as e:
        print(f"aidl_rust_api: {e}", file=sys.stderr)
        return 1
    parts = next(iter(pkgs)).split(".")
    opening = "".join(f"pub mod {p} {{ " for p in parts)
    closing = "}" * len(parts)
    with open(out_path, "w") as f:
        f.write("// Generated by tools/android-check/aidl_rust_api.py: the public API of Soong's AIDL\n"
                "// Rust backend crate, for type checks only.\n"
                "#![allow(non_snake_case, non_camel_case_types, non_upper_case_globals, dead_code, unused, clippy::all)]\n"
                f"pub mod aidl {{ {opening}\n{body}\n{closing} }}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
