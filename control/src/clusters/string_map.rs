//! A map of text to text in a cluster spec: its labels, a container's environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A map of text to text in a spec (its labels, a container's environment). A type of its own
/// so that GraphQL takes it as the `JSON` object REST takes; everywhere else it is the map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct StringMap(pub BTreeMap<String, String>);

/// A cluster's labels, key to value.
pub type Labels = StringMap;
/// A container's environment, name to value.
pub type Env = StringMap;

impl StringMap {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for StringMap {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for StringMap {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

// A nullable `JSON` input, as the labels have always been in GraphQL: absent or null is none.
#[cfg(feature = "graphql")]
type StringMapInput = Option<async_graphql::Json<BTreeMap<String, String>>>;

#[cfg(feature = "graphql")]
impl async_graphql::InputType for StringMap {
    type RawValueType = Self;

    fn type_name() -> std::borrow::Cow<'static, str> {
        <StringMapInput as async_graphql::InputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <StringMapInput as async_graphql::InputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
        <StringMapInput as async_graphql::InputType>::create_type_info(registry)
    }

    fn parse(value: Option<async_graphql::Value>) -> async_graphql::InputValueResult<Self> {
        <StringMapInput as async_graphql::InputType>::parse(value)
            .map(|map| StringMap(map.map(|m| m.0).unwrap_or_default()))
            .map_err(async_graphql::InputValueError::propagate)
    }

    fn to_value(&self) -> async_graphql::Value {
        async_graphql::to_value(&self.0).unwrap_or_default()
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }
}
