//! A tracing subscriber for unit tests that keeps every span made: its name
//! and its fields as ` name=value` text, those recorded after it opened
//! included.

use std::sync::{Arc, Mutex};

/// The spans made while it is the default subscriber
/// ([`Spans::install`]).
#[derive(Clone, Default)]
pub(crate) struct Spans(Arc<Mutex<Vec<String>>>);

impl Spans {
    /// A new one, the thread's default subscriber until the guard drops.
    pub(crate) fn install() -> (Spans, tracing::subscriber::DefaultGuard) {
        let spans = Spans::default();
        let guard = tracing::subscriber::set_default(spans.clone());
        (spans, guard)
    }

    /// Whether a span has every one of `fields`, each its name (the span's
    /// own, `coord.backend`) or one ` name=value` exactly (`op="give_back"`,
    /// `key=g`); `name=` alone: the field with any value.
    pub(crate) fn has(&self, fields: &[&str]) -> bool {
        let is = |part: &str, f: &str| part == f || (f.ends_with('=') && part.starts_with(f));
        let spans = self.0.lock().unwrap();
        (spans.iter()).any(|s| fields.iter().all(|f| s.split(' ').any(|part| is(part, f))))
    }

    /// Panics unless a span has every one of `fields` (see [`has`](Self::has)),
    /// listing the spans made.
    #[track_caller]
    pub(crate) fn assert_has(&self, fields: &[&str]) {
        assert!(
            self.has(fields),
            "no span with {fields:?} in {:#?}",
            self.0.lock().unwrap()
        );
    }
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut spans = self.0.lock().unwrap();
        let mut text = span.metadata().name().to_owned();
        span.record(&mut Fields(&mut text));
        spans.push(text);
        tracing::span::Id::from_u64(spans.len() as u64)
    }
    fn record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut spans = self.0.lock().unwrap();
        if let Some(text) = spans.get_mut(id.into_u64() as usize - 1) {
            values.record(&mut Fields(text));
        }
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
