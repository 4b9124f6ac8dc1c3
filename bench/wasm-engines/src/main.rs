//! wasmi 2 against wasmtime 48 on what Synod's WASM sandbox does: compile a
//! module, run a tight loop under a limiter (fuel; for wasmtime also epoch
//! interruption), and run the README's greet plugin per task (fresh instance,
//! alloc, write the payload, run), as `plugins/src/wasm.rs` does.
use std::time::Instant;

const SPIN: &str = r#"(module
  (func (export "spin") (param $n i32) (result i32) (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (local.get $acc) (i32.xor (local.get $i) (i32.const 0x5a5a))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $acc)))"#;

fn main() {
    let greet = std::fs::read_to_string(std::env::args().nth(1).expect("path to greet.wat")).unwrap();
    let spin_wasm = wat::parse_str(SPIN).unwrap();
    let greet_wasm = wat::parse_str(&greet).unwrap();
    let n: i32 = 200_000_000;
    let payload = br#"{"name":"Ada","n":1}"#;
    let calls = 20_000;

    // ---- wasmi (fuel, as Synod runs it)
    {
        use wasmi::*;
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let t = Instant::now();
        let module = Module::new(&engine, &greet_wasm[..]).unwrap();
        let compile_greet = t.elapsed();
        let spin = Module::new(&engine, &spin_wasm[..]).unwrap();
        let mut store = Store::new(&engine, ());
        store.set_fuel(u64::MAX / 2).unwrap();
        let linker = Linker::<()>::new(&engine);
        let inst = linker.instantiate_and_start(&mut store, &spin).unwrap();
        let f = inst.get_typed_func::<i32, i32>(&store, "spin").unwrap();
        let t = Instant::now();
        let r = f.call(&mut store, n).unwrap();
        let spin_s = t.elapsed().as_secs_f64();
        let mut linker = Linker::<()>::new(&engine);
        linker.func_wrap("synod", "log", |_: Caller<'_, ()>, _: i32, _: i32| {}).unwrap();
        let t = Instant::now();
        for _ in 0..calls {
            let mut store = Store::new(&engine, ());
            store.set_fuel(1_000_000).unwrap();
            let inst = linker.instantiate_and_start(&mut store, &module).unwrap();
            let mem = inst.get_memory(&store, "memory").unwrap();
            let alloc = inst.get_typed_func::<i32, i32>(&store, "synod_alloc").unwrap();
            let run = inst.get_typed_func::<(i32, i32), i64>(&store, "synod_run").unwrap();
            let p = alloc.call(&mut store, payload.len() as i32).unwrap();
            mem.write(&mut store, p as usize, payload).unwrap();
            let out = run.call(&mut store, (p, payload.len() as i32)).unwrap();
            assert!(out > 0);
        }
        let per_call = t.elapsed().as_secs_f64() / calls as f64;
        println!(
            "wasmi 2 (fuel):            spin {n} iters {spin_s:.3} s ({:.0} M iters/s, r={r}); greet compile {:?}; greet per task {:.1} us",
            n as f64 / spin_s / 1e6,
            compile_greet,
            per_call * 1e6
        );
    }

    // ---- wasmtime (fuel, and epoch interruption)
    for (label, fuel) in [("fuel", true), ("epoch", false)] {
        use wasmtime::*;
        let mut config = Config::new();
        config.consume_fuel(fuel);
        config.epoch_interruption(!fuel);
        let engine = Engine::new(&config).unwrap();
        let t = Instant::now();
        let module = Module::new(&engine, &greet_wasm[..]).unwrap();
        let compile_greet = t.elapsed();
        let spin = Module::new(&engine, &spin_wasm[..]).unwrap();
        let mut store = Store::new(&engine, ());
        if fuel {
            store.set_fuel(u64::MAX / 2).unwrap();
        } else {
            store.set_epoch_deadline(u64::MAX / 2);
        }
        let linker = Linker::<()>::new(&engine);
        let inst = linker.instantiate(&mut store, &spin).unwrap();
        let f = inst.get_typed_func::<i32, i32>(&mut store, "spin").unwrap();
        let t = Instant::now();
        let r = f.call(&mut store, n).unwrap();
        let spin_s = t.elapsed().as_secs_f64();
        let mut linker = Linker::<()>::new(&engine);
        linker.func_wrap("synod", "log", |_: Caller<'_, ()>, _: i32, _: i32| {}).unwrap();
        let pre = linker.instantiate_pre(&module).unwrap();
        let t = Instant::now();
        for _ in 0..calls {
            let mut store = Store::new(&engine, ());
            if fuel {
                store.set_fuel(1_000_000).unwrap();
            } else {
                store.set_epoch_deadline(1);
            }
            let inst = pre.instantiate(&mut store).unwrap();
            let mem = inst.get_memory(&mut store, "memory").unwrap();
            let alloc = inst.get_typed_func::<i32, i32>(&mut store, "synod_alloc").unwrap();
            let run = inst.get_typed_func::<(i32, i32), i64>(&mut store, "synod_run").unwrap();
            let p = alloc.call(&mut store, payload.len() as i32).unwrap();
            mem.write(&mut store, p as usize, payload).unwrap();
            let out = run.call(&mut store, (p, payload.len() as i32)).unwrap();
            assert!(out > 0);
        }
        let per_call = t.elapsed().as_secs_f64() / calls as f64;
        println!(
            "wasmtime 48 ({label:5}):      spin {n} iters {spin_s:.3} s ({:.0} M iters/s, r={r}); greet compile {:?}; greet per task {:.1} us",
            n as f64 / spin_s / 1e6,
            compile_greet,
            per_call * 1e6
        );
    }
}
