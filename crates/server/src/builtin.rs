//! The built-in business class `DO`, served in the default namespace with zero user code.
//! Today it is storage only (the raw storage API works on every object); the business stores
//! and their REST surface build on it.

use dotdo_runtime::{DurableObject, FnClass, ObjectClass, ObjectState, async_trait};
use std::sync::Arc;

/// The default namespace of the built-in class.
pub const BUILTIN_NAMESPACE: &str = "do";

pub struct BusinessObject {
    _state: ObjectState,
}

#[async_trait]
impl DurableObject for BusinessObject {}

pub fn class() -> Arc<dyn ObjectClass> {
    FnClass::new("DO", |state| BusinessObject { _state: state })
}
