//! Test fixture: a valid shared library that exports no plugin root module.

/// An ordinary C function, so the library is not empty.
#[no_mangle]
pub extern "C" fn not_a_plugin_add(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}
