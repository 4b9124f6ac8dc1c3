;; A complete Synod WASM plugin (ABI version 1), in the WebAssembly text
;; format: answers {"greeting": "hello", "input": <the payload>}.
;;
;;   synod plugin load plugins/examples/wasm/greet.wat --name greet --version 1.0.0
;;   synod task submit greet --wait 10 --payload '{"name": "Ada"}'
;;
;; The ABI: export `memory`, `synod_alloc(len) -> ptr` (Synod writes the
;; payload's JSON there) and `synod_run(ptr, len) -> i64` returning
;; (out_ptr << 32) | out_len of the result's JSON; bit 63 set means the bytes
;; are an error message. `synod.log(ptr, len)` writes a line to the node's log.
(module
  (import "synod" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  ;; Bytes 0..1023 hold constants; the heap starts at 1024.
  (data (i32.const 0) "{\"greeting\":\"hello\",\"input\":")
  (data (i32.const 64) "greet: called")
  (global $prefix_len i32 (i32.const 28))
  (global $heap (mut i32) (i32.const 1024))

  ;; A bump allocator: every call gets a fresh instance, so nothing is freed.
  (func $alloc (export "synod_alloc") (param $len i32) (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.div_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                                      (i32.const 65536)))
              (i32.const -1))
          (then unreachable))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  (func (export "synod_run") (param $ptr i32) (param $len i32) (result i64)
    (local $out i32) (local $n i32)
    (call $log (i32.const 64) (i32.const 13))
    ;; prefix + payload + "}"
    (local.set $n (i32.add (i32.add (global.get $prefix_len) (local.get $len)) (i32.const 1)))
    (local.set $out (call $alloc (local.get $n)))
    (memory.copy (local.get $out) (i32.const 0) (global.get $prefix_len))
    (memory.copy (i32.add (local.get $out) (global.get $prefix_len)) (local.get $ptr) (local.get $len))
    (i32.store8 (i32.sub (i32.add (local.get $out) (local.get $n)) (i32.const 1)) (i32.const 125))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (local.get $n))))
)
