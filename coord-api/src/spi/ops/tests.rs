//! The text forms, limits and audit checks of the operations SPI.

use super::*;
use crate::Key;

#[test]
fn resources_read_back_as_written() {
    for text in [
        "lock:jobs/backup",
        "election:scheduler",
        "job:nightly@2026-12-01",
    ] {
        let r: Resource = text.parse().unwrap();
        assert_eq!(r.to_string(), text);
    }
    // A job's name and occurrence may hold `@` (and `\`): escaped in
    // the text, so that the listed resource reads back as the same run
    // (`job:deploy@web@v1.2` named two runs).
    let key = |k| Key::new(k).unwrap();
    for (job, occ) in [("deploy", "web@v1.2"), ("a@b", "c"), ("x\\", "@\\@")] {
        let run = Resource::job(key(job), key(occ));
        let text = run.to_string();
        assert_eq!(text.parse::<Resource>().unwrap(), run, "{text}");
    }
    assert_eq!(
        Resource::job(key("deploy"), key("web@v1.2")).to_string(),
        "job:deploy@web\\@v1.2"
    );
    assert!("job:a@b@c".parse::<Resource>().is_err(), "two unescaped @");
    // A `\` escaping nothing is kept as typed (it was dropped: `C:\tmp`
    // named the job `C:tmp`).
    assert_eq!(
        "job:C:\\tmp@1".parse::<Resource>().unwrap(),
        Resource::job(key("C:\\tmp"), key("1"))
    );
    assert_eq!(
        "queue:a\\b\\@c@2".parse::<Resource>().unwrap(),
        Resource::delivery(key("a\\b@c"), 2)
    );
    // A queue's delivery is named by its item; a queue's name may hold
    // `@`, escaped as a job's.
    assert_eq!(
        "queue:orders@17".parse::<Resource>().unwrap(),
        Resource::delivery(key("orders"), 17)
    );
    for r in [
        Resource::delivery(key("a@b"), 3),
        Resource::new(ResourceKind::Queue, key("a@b\\")),
        Resource::new(ResourceKind::Queue, key("orders")),
    ] {
        let text = r.to_string();
        assert_eq!(text.parse::<Resource>().unwrap(), r, "{text}");
    }
    assert_eq!(
        Resource::delivery(key("a@b"), 3).to_string(),
        "queue:a\\@b@3"
    );
    // A topic's subscription, and the delivery of one of its events.
    let sub = Resource::subscription(key("pay@ments"), key("billing"));
    assert_eq!(sub.to_string(), "topic:pay\\@ments@billing");
    let one = Resource::event_delivery(key("payments"), key("bill@ing"), 42);
    assert_eq!(one.to_string(), "topic:payments@bill\\@ing@42");
    for r in [sub, one] {
        assert_eq!(r.to_string().parse::<Resource>().unwrap(), r);
    }
    let r: Resource = "lock:a@b".parse().unwrap();
    assert_eq!((r.name.as_str(), r.occurrence), ("a@b", None));
    let lock_item = Resource {
        item: Some(1),
        ..Resource::new(ResourceKind::Lock, key("k"))
    };
    assert!(lock_item.check().is_err(), "only a queue has items");
    let job_item = Resource {
        item: Some(1),
        ..Resource::job(key("j"), key("o"))
    };
    assert!(job_item.check().is_err(), "a job's run has no item");
    let job_sub = Resource {
        subscription: Some(key("s")),
        ..Resource::job(key("j"), key("o"))
    };
    assert!(job_sub.check().is_err(), "a job has no subscription");
    let topic_occ = Resource {
        occurrence: Some(key("o")),
        ..Resource::subscription(key("t"), key("s"))
    };
    assert!(topic_occ.check().is_err(), "a topic has no occurrence");
    for bad in [
        "jobs/backup",
        "table:x",
        "job:nightly",
        "lock:",
        "queue:orders@x",
        "queue:orders@-1",
        "queue:a@1@2",
        "topic:payments",
        "topic:payments@billing@x",
        "topic:a@b@1@2",
    ] {
        assert!(
            matches!(bad.parse::<Resource>(), Err(Error::InvalidArgument { .. })),
            "{bad}"
        );
    }
}

#[test]
fn acquired_at_reads_a_time_token() {
    let holder = HolderId::new(InstanceId::new("a").unwrap());
    let r = Resource::new(ResourceKind::Lock, Key::new("k").unwrap());
    let rec = |t| {
        LeaseRecord::new(
            r.clone(),
            Role::Lock(LeaseKind::Exclusive),
            holder.clone(),
            Some(FencingToken(t)),
            Duration::from_secs(1),
        )
    };
    let t = 1_764_633_600_000_000; // 2025-12-02 in µs
    assert_eq!(
        rec(t).acquired_at(),
        Some(SystemTime::UNIX_EPOCH + Duration::from_micros(t))
    );
    assert_eq!(rec(7).acquired_at(), None);
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
    assert_eq!(rec(t).since(at).acquired_at(), Some(at));
}

#[test]
fn limits_and_audit_text_are_checked() {
    assert!(check_limit("leases", 0).is_err());
    assert!(check_limit("leases", MAX_PAGE + 1).is_err());
    assert!(check_limit("leases", MAX_PAGE).is_ok());
    let r = Resource::new(ResourceKind::Lock, Key::new("k").unwrap());
    let i = InstanceId::new("a").unwrap();
    let rec = |op: &str, why: &str| {
        AuditRecord::new(op, i, "force-release", r.clone(), FencingToken(1), why, "")
    };
    assert!(rec("ops", "stuck").check().is_ok());
    assert!(rec("ops", " ").check().is_err());
    assert!(rec("", "stuck").check().is_err());
    assert!(
        rec("ops", &"x".repeat(MAX_REASON_BYTES + 1))
            .check()
            .is_err()
    );
}
