//! `make deps` installs what `deploy/missing-packages.sh` prints. A fresh
//! Debian image with `libclang-cpp.so.14` but no libclang fooled the old
//! check (it matched `libclang*.so*`), skipped the install, and the build
//! failed in librocksdb-sys. Here the script runs against fake machine
//! trees, that one among them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn touch(root: &Path, rel: &str, executable: bool) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
    if executable {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// What the script prints on a machine whose libraries are under `root`
/// and whose commands are `root/bin/*` alone.
fn missing(root: &Path) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/missing-packages.sh");
    let out = Command::new("/bin/sh")
        .arg(script)
        .env_clear()
        .env("PATH", root.join("bin"))
        .env("SYNOD_DEPS_ROOT", root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn libclang_cpp_alone_is_not_libclang() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for cmd in ["bin/c++", "bin/kill", "bin/python3", "bin/pip3"] {
        touch(root, cmd, true);
    }
    // The fresh image: clang's C++ library, not libclang.
    touch(root, "usr/lib/llvm-14/lib/libclang-cpp.so.14", false);
    touch(root, "usr/lib/x86_64-linux-gnu/libclang-cpp.so.14", false);
    assert_eq!(missing(root), ["libclang-dev"]);

    // Control: each name bindgen loads counts.
    for lib in ["usr/lib/llvm-14/lib/libclang.so.1", "usr/lib/x86_64-linux-gnu/libclang-14.so.1"] {
        let with = tempfile::tempdir().unwrap();
        for cmd in ["bin/c++", "bin/kill", "bin/python3", "bin/pip3"] {
            touch(with.path(), cmd, true);
        }
        touch(with.path(), lib, false);
        assert_eq!(missing(with.path()), Vec::<String>::new(), "{lib} is libclang");
    }
}

#[test]
fn a_bare_machine_gets_every_package() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(missing(dir.path()), ["libclang-dev", "g++", "procps", "python3-pip"]);
    // python3 without pip (`python3 -m pip` fails) still needs pip.
    touch(dir.path(), "bin/python3", true);
    std::fs::write(dir.path().join("bin/python3"), "#!/bin/sh\nexit 1\n").unwrap();
    assert!(missing(dir.path()).contains(&"python3-pip".to_owned()));
    // Control: with pip3 it does not.
    touch(dir.path(), "bin/pip3", true);
    assert!(!missing(dir.path()).contains(&"python3-pip".to_owned()));
}
