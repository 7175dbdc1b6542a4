//! Refuses to build against a missing or stale contract artifact: the bindings are generated
//! from `contracts/out`, which `make contracts` writes together with a stamp of the sources.

use std::path::Path;

fn main() {
    // Read when the script runs, not baked in when it is compiled: two checkouts sharing one
    // target directory each check their own contracts.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let contracts = Path::new(&manifest_dir).join("../../contracts");
    let artifact = contracts.join("out/Strongroom.sol/Strongroom.json");
    let stamp = contracts.join("out/sources.sha256");
    let src = contracts.join("src");
    println!("cargo:rerun-if-changed={}", artifact.display());
    println!("cargo:rerun-if-changed={}", stamp.display());
    println!("cargo:rerun-if-changed={}", src.display());

    if !artifact.exists() || !stamp.exists() {
        panic!(
            "contract artifact {} is missing: run `make contracts` (installs the toolchain and runs forge build)",
            artifact.display()
        );
    }
    let mut files = Vec::new();
    collect_sources(&src, &mut files);
    // Byte order, as `LC_ALL=C sort` in the Makefile.
    files.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
    let mut sources = Vec::new();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        sources.extend(std::fs::read(f).expect("readable source"));
    }
    let expected = std::fs::read_to_string(&stamp).expect("readable stamp");
    let actual = sha256_hex(&sources);
    if expected.split_whitespace().next() != Some(actual.as_str()) {
        panic!(
            "contract artifact {} is stale: contracts/src changed since it was built; run `make contracts` to regenerate it",
            artifact.display()
        );
    }
}

fn collect_sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("contracts/src is readable") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            collect_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "sol") {
            out.push(path);
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
