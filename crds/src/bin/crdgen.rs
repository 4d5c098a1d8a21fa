//! Writes the CRD manifests generated from the Rust types.
//!
//! `crdgen [DIR]` writes one YAML file per CRD into DIR (default
//! `manifests/crds`); `crdgen --check [DIR]` writes nothing and exits 1 when
//! the files in DIR differ from what the types generate.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut dir = PathBuf::from("manifests/crds");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: crdgen [--check] [DIR]   (DIR defaults to manifests/crds)");
                return ExitCode::SUCCESS;
            }
            other => dir = PathBuf::from(other),
        }
    }
    let files = match veloflux_crds::crdgen::rendered() {
        Ok(files) => files,
        Err(err) => {
            eprintln!("crdgen: rendering CRDs failed: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut drift = false;
    for (name, text) in files {
        let path = dir.join(&name);
        if check {
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current != text {
                eprintln!("crdgen: {} is out of date; run `make crds`", path.display());
                drift = true;
            }
        } else {
            if let Err(err) =
                std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text))
            {
                eprintln!("crdgen: writing {} failed: {err}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", path.display());
        }
    }
    if drift {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
