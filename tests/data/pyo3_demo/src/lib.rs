use pyo3::prelude::*;

/// Sum of two integers, computed in Rust.
#[pyfunction]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// The target Rust was compiled for, e.g. "arm".
#[pyfunction]
fn arch() -> &'static str {
    std::env::consts::ARCH
}

/// Words of a string reversed, to exercise str conversion both ways.
#[pyfunction]
fn reverse_words(text: &str) -> String {
    text.split_whitespace().rev().collect::<Vec<_>>().join(" ")
}

#[pymodule]
fn pyo3_demo(_py: Python<'_>, m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(add, m)?)?;
    m.add_function(wrap_pyfunction!(arch, m)?)?;
    m.add_function(wrap_pyfunction!(reverse_words, m)?)?;
    Ok(())
}
