//! WASM plugins: the README example, the load checks, and the sandbox: each
//! attack fails its call with a clear, non-retryable error, and the same
//! host then runs a well-behaved module as before.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use synod_plugins::{CancelToken, PluginError, WasmLimits, WasmManifest, WasmModule};

const GREET: &str = include_str!("../../examples/wasm/greet.wat");

fn manifest(name: &str) -> WasmManifest {
    WasmManifest {
        name: name.to_owned(),
        version: "1.0.0".to_owned(),
        description: String::new(),
        max_payload_bytes: None,
        fuel: None,
        memory_bytes: None,
        timeout_ms: None,
        permissions: Vec::new(),
    }
}

fn limits() -> WasmLimits {
    WasmLimits {
        max_fuel: 200_000_000,
        max_memory_bytes: 8 << 20,
        max_output_bytes: 64 << 10,
        max_timeout: Duration::from_secs(5),
        ..WasmLimits::default()
    }
}

fn must_load(m: WasmManifest, wat: &str) -> WasmModule {
    WasmModule::load(m, wat.as_bytes(), &limits()).unwrap_or_else(|e| panic!("load: {e}"))
}

/// A module with the ABI's memory and allocator, and `run` as the body of
/// `synod_run` (params $ptr $len, result i64).
fn module(imports: &str, run: &str) -> String {
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func $alloc (export "synod_alloc") (param $len i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (local.get $ptr) (local.get $len)))
    (local.get $ptr))
  (func (export "synod_run") (param $ptr i32) (param $len i32) (result i64)
    {run}))"#
    )
}

fn must_fail(m: &WasmModule, payload: Value) -> String {
    match m.call(&payload, &CancelToken::new()) {
        Ok(out) => panic!("should fail, returned {out}"),
        Err(e @ PluginError::Failed { retryable: false, .. }) => e.to_string(),
        Err(other) => panic!("expected a non-retryable failure, got {other:?}"),
    }
}

/// The control after each attack: a good module still runs here.
fn assert_healthy() {
    let greet = must_load(manifest("greet"), GREET);
    let out = greet.call(&json!({"n": 1}), &CancelToken::new()).expect("greet runs");
    assert_eq!(out, json!({"greeting": "hello", "input": {"n": 1}}));
}

#[test]
fn the_readme_example_answers_with_its_payload() {
    let greet = must_load(manifest("greet"), GREET);
    let payload = json!({"name": "Ada", "tags": ["x", "ü"], "n": 3.5});
    let out = greet.call(&payload, &CancelToken::new()).expect("greet runs");
    assert_eq!(out, json!({"greeting": "hello", "input": payload}));
    // The binary form of the same module loads and answers the same.
    let binary = wat::parse_str(GREET).expect("valid WAT");
    let again = WasmModule::load(manifest("greet"), &binary, &limits()).expect("binary loads");
    assert_eq!(again.call(&payload, &CancelToken::new()).unwrap(), out);
    assert_ne!(again.sha256(), greet.sha256(), "the sha256 is of the bytes sent");
}

#[test]
fn bad_modules_are_refused_at_load_by_name() {
    let cases: Vec<(String, &str)> = vec![
        ("not wasm at all".to_owned(), "not a valid WebAssembly module"),
        (r#"(module (memory (export "memory") 1))"#.to_owned(), "does not export synod_alloc, synod_run"),
        (
            r#"(module (memory (export "memory") 1) (func (export "synod_alloc") (param i32) (result i32) i32.const 0)
                (func (export "synod_run") (param i32) (result i64) i64.const 0))"#
                .to_owned(),
            "synod_run must be (i32, i32) -> i64",
        ),
        (
            module(
                r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
                "i64.const 0",
            ),
            "imports wasi_snapshot_preview1.fd_write, which Synod does not provide",
        ),
        (module(r#"(import "env" "socket" (func))"#, "i64.const 0"), "imports env.socket"),
        // Initial memory beyond the 8 MiB cap: refused when instantiated at load.
        (
            module("", "i64.const 0").replace("(memory (export \"memory\") 1)", "(memory (export \"memory\") 1000)"),
            "instantiating",
        ),
    ];
    for (wat, expected) in cases {
        let err = WasmModule::load(manifest("bad"), wat.as_bytes(), &limits()).expect_err("refused");
        assert!(err.contains(expected), "{expected:?} not in {err:?}");
    }
    let mut big = limits();
    big.max_module_bytes = 100;
    let err = WasmModule::load(manifest("greet"), GREET.as_bytes(), &big).expect_err("refused");
    assert!(err.contains("plugins.wasm_max_module_size"), "{err}");
    let mut m = manifest("greet");
    m.permissions = vec!["network".into()];
    assert!(WasmModule::load(m, GREET.as_bytes(), &limits()).err().unwrap().contains("unknown permission"));
    let mut m = manifest("greet");
    m.fuel = Some(u64::MAX);
    assert!(WasmModule::load(m, GREET.as_bytes(), &limits()).err().unwrap().contains("at most"));
    let mut m = manifest("Bad Name");
    m.version = "1".into();
    assert!(WasmModule::load(m, GREET.as_bytes(), &limits()).is_err());
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let m = must_load(manifest("spin"), &module("", "(loop $l (br $l)) i64.const 0"));
    let started = Instant::now();
    let err = must_fail(&m, json!({}));
    assert!(err.contains("ran out of fuel after 200000000 units"), "{err}");
    eprintln!("200M fuel spent in {:?}", started.elapsed());
    assert_healthy();
}

#[test]
fn an_infinite_loop_with_ample_fuel_meets_the_wall_clock_deadline() {
    let mut m = manifest("spin");
    m.timeout_ms = Some(300);
    let mut l = limits();
    l.max_fuel = u64::MAX / 2;
    let spin = WasmModule::load(m, module("", "(loop $l (br $l)) i64.const 0").as_bytes(), &l).expect("loads");
    let err = must_fail(&spin, json!({}));
    assert!(err.contains("wall-clock limit of 300ms"), "{err}");
    // And a cancelled task stops the same way, as Cancelled.
    let mut m = manifest("spin");
    m.timeout_ms = Some(5_000);
    let spin = WasmModule::load(m, module("", "(loop $l (br $l)) i64.const 0").as_bytes(), &l).expect("loads");
    let cancel = CancelToken::new();
    let c = cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        c.cancel();
    });
    let started = Instant::now();
    assert_eq!(spin.call(&json!({}), &cancel).unwrap_err(), PluginError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(4), "cancel was not seen for {:?}", started.elapsed());
    canceller.join().unwrap();
    assert_healthy();
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    let bomb = module("", "(loop $l (drop (memory.grow (i32.const 16))) (br $l)) i64.const 0");
    let m = must_load(manifest("bomb"), &bomb);
    let err = must_fail(&m, json!({}));
    assert!(err.contains("memory limit of 8388608 bytes exceeded"), "{err}");
    assert_healthy();
}

#[test]
fn a_huge_output_is_refused_by_the_output_cap() {
    // Claims 16 MiB of output at address 0.
    let m = must_load(manifest("huge"), &module("", "i64.const 16777216"));
    let err = must_fail(&m, json!({}));
    assert!(err.contains("output of 16777216 bytes exceeds plugins.wasm_max_output (65536 bytes)"), "{err}");
    // An output pointer outside memory is refused, not read.
    let m = must_load(manifest("wild"), &module("", "i64.const 0x7fff000000000010"));
    let err = must_fail(&m, json!({}));
    assert!(err.contains("outside the module's memory"), "{err}");
    assert_healthy();
}

#[test]
fn a_trap_fails_the_task() {
    let m = must_load(manifest("trap"), &module("", "unreachable"));
    let err = must_fail(&m, json!({}));
    assert!(err.starts_with("wasm: trap:"), "{err}");
    let m = must_load(manifest("oob"), &module("", "(drop (i32.load (i32.const 1000000))) i64.const 0"));
    assert!(must_fail(&m, json!({})).starts_with("wasm: trap:"));
    assert_healthy();
}

#[test]
fn an_import_that_is_not_granted_fails_the_call() {
    let clock = module(r#"(import "synod" "now_ms" (func $now (result i64)))"#, "(drop (call $now)) (i64.const 0)");
    let m = must_load(manifest("clock"), &clock);
    let err = must_fail(&m, json!({}));
    assert!(err.contains("synod.now_ms is not granted"), "{err}");
    // Control: granted, the same module runs (and returns the empty output,
    // which is not JSON: a clear error of its own).
    let mut granted = manifest("clock");
    granted.permissions = vec!["clock".into()];
    let m = WasmModule::load(granted, clock.as_bytes(), &limits()).expect("loads");
    let err = must_fail(&m, json!({}));
    assert!(err.contains("not JSON"), "{err}");
    assert_healthy();
}

#[test]
fn a_plugin_reported_error_fails_the_task_with_its_message() {
    let wat = module("", "(i64.or (i64.const 0x8000000000000000) (i64.const 0x0000000800000005))")
        .replace("(global $heap", "(data (i32.const 8) \"nope!\") (global $heap");
    let m = must_load(manifest("refuse"), &wat);
    assert_eq!(must_fail(&m, json!({})), "nope!");
}

#[test]
fn the_payload_limit_is_the_manifests() {
    let mut m = manifest("greet");
    m.max_payload_bytes = Some(16);
    let greet = WasmModule::load(m, GREET.as_bytes(), &limits()).expect("loads");
    assert_eq!(greet.validate(&json!({"a": 1})), Ok(()));
    assert!(greet.validate(&json!({"a": "x".repeat(100)})).unwrap_err().contains("limit of 16 bytes"));
}
