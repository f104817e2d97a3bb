//! The global allocator of the `telemetron` binary: mimalloc, called through its plain entry
//! points whenever those already return the alignment that a layout requires.
//!
//! The `mimalloc` crate's allocator passes every request to `mi_malloc_aligned`, even with an
//! alignment of 1. mimalloc v3 serves that call from its small-block fast path only up to
//! 1 KiB; above that, any block whose size is not a power of two up to 4 KiB is
//! over-allocated and offset instead. hyper's 8 KiB read buffer, allocated on every request,
//! took that path: about 1,270 instructions per single-event request went to
//! `mi_malloc_aligned` in callgrind. `mi_malloc` returns blocks aligned to 16 bytes, or to
//! their size when smaller, which covers almost every Rust layout, so only the rest goes to
//! the aligned functions.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

use libmimalloc_sys as ffi;

/// Alignment that mimalloc's plain functions guarantee for a block of at least this size
/// (`MI_MAX_ALIGN_SIZE`, the alignment of `max_align_t`).
const PLAIN_ALIGN: usize = 16;

/// mimalloc as the global allocator. Use it with
/// `#[global_allocator] static ALLOCATOR: Mimalloc = Mimalloc;` in a binary.
pub struct Mimalloc;

/// Returns true when a block of `size` bytes from the plain functions is aligned to `align`.
/// mimalloc rounds a block of 16 bytes or more to a multiple of 16 and a smaller one to 8,
/// and aligns each block to 16 or 8 bytes accordingly. That covers `align <= size`. The
/// rounding is `MI_ALIGN2W` in mimalloc v3's page-queue.c, set by its 16-byte `MI_MAX_ALIGN_SIZE`.
fn plain_is_aligned(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every function forwards to mimalloc, which meets the `GlobalAlloc` contract for the
// pointers it returns. The plain functions are used only where their alignment covers the
// layout (`plain_is_aligned`), and `mi_free` accepts blocks from both kinds of function.
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain FFI calls with a size and a power-of-two alignment from `Layout`.
        unsafe {
            if plain_is_aligned(layout.size(), layout.align()) {
                ffi::mi_malloc(layout.size()).cast()
            } else {
                ffi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if plain_is_aligned(layout.size(), layout.align()) {
                ffi::mi_zalloc(layout.size()).cast()
            } else {
                ffi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a pointer this allocator returned.
        unsafe { ffi::mi_free(ptr.cast::<c_void>()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a pointer this allocator returned with `layout`. The new
        // block needs the same alignment, so the check below uses `new_size`.
        unsafe {
            if plain_is_aligned(new_size, layout.align()) {
                ffi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                ffi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks around the plain/aligned boundary come back aligned, zeroed when asked, and
    /// keep their contents when they grow and shrink.
    #[test]
    fn blocks_are_aligned_and_keep_their_contents() {
        let allocator = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [
                1, 3, 7, 8, 12, 15, 16, 24, 100, 1024, 1500, 5000, 8192, 70_000,
            ] {
                let layout = Layout::from_size_align(size, align).expect("valid layout");
                // SAFETY: sizes are non-zero, every block is used within its size and freed
                // once with the layout it was last allocated or reallocated with.
                unsafe {
                    let zeroed = allocator.alloc_zeroed(layout);
                    assert!(!zeroed.is_null());
                    assert_eq!(
                        zeroed as usize % align,
                        0,
                        "zeroed: size {size}, align {align}"
                    );
                    assert!(
                        (0..size).all(|i| *zeroed.add(i) == 0),
                        "zeroed: size {size}, align {align}"
                    );
                    allocator.dealloc(zeroed, layout);

                    let mut block = allocator.alloc(layout);
                    let mut current = size;
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "size {size}, align {align}");
                    fill(block, size);
                    for new_size in [size * 3, size.div_ceil(2), size] {
                        let old_layout =
                            Layout::from_size_align(current, align).expect("valid layout");
                        block = allocator.realloc(block, old_layout, new_size);
                        assert!(!block.is_null());
                        assert_eq!(
                            block as usize % align,
                            0,
                            "realloc {current} -> {new_size}, align {align}"
                        );
                        assert!(
                            holds_pattern(block, current.min(new_size)),
                            "realloc {current} -> {new_size}"
                        );
                        fill(block, new_size);
                        current = new_size;
                    }
                    allocator.dealloc(block, layout);
                }
            }
        }
    }

    /// Writes a recognisable pattern into the first `len` bytes.
    unsafe fn fill(block: *mut u8, len: usize) {
        for i in 0..len {
            // SAFETY: the caller owns at least `len` bytes at `block`.
            unsafe { *block.add(i) = (i % 251) as u8 };
        }
    }

    unsafe fn holds_pattern(block: *mut u8, len: usize) -> bool {
        // SAFETY: the caller owns at least `len` bytes at `block`.
        (0..len).all(|i| unsafe { *block.add(i) } == (i % 251) as u8)
    }
}
