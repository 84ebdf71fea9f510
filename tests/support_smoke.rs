//! Keeps the shared harness compiling even before other test files use it.
mod support;

#[test]
fn require_tool_finds_sh() {
    assert!(support::require_tool("sh", "dash").exists());
}
