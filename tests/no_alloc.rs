//! The JIT's forward pass allocates nothing: every buffer, pointer table and scratch area is
//! fixed when the network is compiled. A counting global allocator checks it.

use cnnc::JitModel;
use cnnc::check_source;
use cnnc::param_specs;
use cnnc::random_weights;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_forward_pass_allocates_nothing() {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/googlenet.cnn")).unwrap();
    let checked = check_source(&source, "googlenet", Some(cnnc::Input { c: 3, h: 96, w: 96 })).checked.unwrap();
    let weights = random_weights(&param_specs(&checked.network, &checked.shapes), 1);
    // Every eligible convolution through Winograd, however small at this size.
    let options = cnnc::JitOptions { winograd_min_macs: 0, ..Default::default() };
    let mut jit = JitModel::compile_with(&checked.network, &checked.shapes, weights, 2, options).unwrap();
    let image = vec![0.25f32; 3 * 96 * 96];
    jit.run_image(&image); // warm up: threads started, pages touched
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..5 {
        jit.run_image(&image);
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(after - before, 0, "allocations during the forward pass");
    assert!(jit.result(0).iter().all(|v| v.is_finite()));
}
