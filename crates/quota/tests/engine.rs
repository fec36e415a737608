//! The engine over the in-process counters and over a real Redis: windows, slots, budgets,
//! shared team budgets, tasks, restarts and outages.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // a panic is a failed test

use bff_quota::test_support::{ManualClock, RedisServer};
use bff_quota::{
    Counters, FailMode, Kind, LimitPolicy, Limits, LocalCounters, Quota, QuotaError,
    RedisConnection, RedisCounters, Scope, ScopeKey, Spend, Subject,
};
use std::sync::Arc;
use std::time::Duration;

/// 2026-01-31T23:59:00Z: a minute before a day and a month end.
const T0: u64 = 1_769_903_940;

fn engine(counters: Arc<dyn Counters>, clock: Arc<ManualClock>) -> Arc<Quota> {
    Arc::new(Quota::new(
        counters,
        clock,
        FailMode::Closed,
        Duration::from_secs(660),
    ))
}

fn account(user: &str, limits: Limits) -> Vec<Scope> {
    vec![Scope {
        key: ScopeKey::User(user.into()),
        limits,
    }]
}

/// Lets spawned settlements run.
async fn settle_tasks() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Every engine test, once per backend.
async fn each_backend(test: impl AsyncFn(Arc<dyn Counters>, Arc<ManualClock>)) {
    test(
        Arc::new(LocalCounters::in_memory()),
        Arc::new(ManualClock::at(T0)),
    )
    .await;
    if let Some(redis) = RedisServer::start() {
        let connection =
            Arc::new(RedisConnection::new(&redis.url, Duration::from_secs(2)).unwrap());
        let counters = RedisCounters::new(connection, Duration::from_secs(2));
        test(Arc::new(counters), Arc::new(ManualClock::at(T0))).await;
    }
}

#[tokio::test]
async fn requests_per_minute_refuse_then_the_next_minute_admits() {
    each_backend(async |counters, clock| {
        let quota = engine(counters, Arc::clone(&clock));
        let limits = Limits {
            requests_per_minute: Some(2),
            ..Limits::default()
        };
        let first = quota.admit(account("u", limits.clone()), Kind::Chat, "r1").await.unwrap();
        assert_eq!(first.headers().requests.map(|(l, r, _)| (l, r)), Some((2, 1)));
        drop(first);
        drop(quota.admit(account("u", limits.clone()), Kind::Chat, "r2").await.unwrap());
        let refused = quota.admit(account("u", limits.clone()), Kind::Chat, "r3").await.err().unwrap();
        assert!(
            matches!(&refused, QuotaError::RateLimited { what: "requests per minute", retry_after, .. } if *retry_after == Duration::from_secs(60)),
            "{refused:?}"
        );
        // A refusal carries the same headers an admission would.
        assert_eq!(refused.headers().unwrap().requests.map(|(l, r, _)| (l, r)), Some((2, 0)));
        assert!(quota.admit(account("someone-else", limits.clone()), Kind::Chat, "r4").await.is_ok());
        clock.advance(Duration::from_secs(60));
        assert!(quota.admit(account("u", limits), Kind::Chat, "r5").await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn tokens_count_after_the_call_and_refuse_for_the_rest_of_the_minute() {
    each_backend(async |counters, clock| {
        let quota = engine(counters, Arc::clone(&clock));
        let limits = Limits {
            tokens_per_minute: Some(100),
            ..Limits::default()
        };
        let ticket = quota
            .admit(account("u", limits.clone()), Kind::Chat, "r1")
            .await
            .unwrap();
        ticket.settle(Spend {
            tokens: 150,
            cost_usd: 0.0,
        });
        settle_until(&quota, "u", |used| used.tokens_this_minute == 150).await;
        let refused = quota
            .admit(account("u", limits.clone()), Kind::Chat, "r2")
            .await
            .err()
            .unwrap();
        assert_eq!(refused.kind(), "tokens");
        clock.advance(Duration::from_secs(60));
        let ticket = quota
            .admit(account("u", limits), Kind::Chat, "r3")
            .await
            .unwrap();
        assert_eq!(
            ticket.headers().tokens.map(|(l, r, _)| (l, r)),
            Some((100, 100))
        );
    })
    .await;
}

/// Waits until `user`'s account shows `check` (settlement runs off the request path).
async fn settle_until(quota: &Quota, user: &str, check: impl Fn(&bff_quota::Used) -> bool) {
    scope_until(quota, &ScopeKey::User(user.into()), check).await;
}

/// Waits until `scope` shows `check`.
async fn scope_until(quota: &Quota, scope: &ScopeKey, check: impl Fn(&bff_quota::Used) -> bool) {
    for _ in 0..500 {
        settle_tasks().await;
        let used = quota
            .counters()
            .used(scope, &quota.windows())
            .await
            .unwrap();
        if check(&used) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the settlement never showed");
}

#[tokio::test]
async fn concurrency_is_released_when_settled_or_dropped() {
    each_backend(async |counters, clock| {
        let quota = engine(counters, clock);
        let limits = Limits {
            concurrent_requests: Some(1),
            ..Limits::default()
        };
        let held = quota
            .admit(account("u", limits.clone()), Kind::Chat, "r1")
            .await
            .unwrap();
        let refused = quota
            .admit(account("u", limits.clone()), Kind::Chat, "r2")
            .await
            .err()
            .unwrap();
        assert_eq!(refused.kind(), "concurrency");
        held.settle(Spend::default());
        settle_until(&quota, "u", |used| used.concurrent_requests == 0).await;
        let dropped = quota
            .admit(account("u", limits.clone()), Kind::Chat, "r3")
            .await
            .unwrap();
        drop(dropped); // the caller went away mid-call
        settle_until(&quota, "u", |used| used.concurrent_requests == 0).await;
        assert!(
            quota
                .admit(account("u", limits), Kind::Chat, "r4")
                .await
                .is_ok()
        );
    })
    .await;
}

#[tokio::test]
async fn a_crashed_holders_slot_lapses_after_the_lease() {
    each_backend(async |counters, clock| {
        let quota = engine(counters, Arc::clone(&clock));
        let limits = Limits {
            concurrent_requests: Some(1),
            ..Limits::default()
        };
        let held = quota
            .admit(account("u", limits.clone()), Kind::Chat, "r1")
            .await
            .unwrap();
        std::mem::forget(held); // never settled, never dropped: as if the replica died
        assert!(
            quota
                .admit(account("u", limits.clone()), Kind::Chat, "r2")
                .await
                .is_err()
        );
        clock.advance(Duration::from_secs(661));
        assert!(
            quota
                .admit(account("u", limits), Kind::Chat, "r3")
                .await
                .is_ok()
        );
    })
    .await;
}

#[tokio::test]
async fn budgets_in_dollars_and_tokens_are_spent_then_reset_with_the_day_and_the_month() {
    each_backend(async |counters, clock| {
        let quota = engine(counters, Arc::clone(&clock));
        let daily = Limits {
            daily_budget_usd: Some(1.0),
            ..Limits::default()
        };
        let ticket = quota.admit(account("u", daily.clone()), Kind::Chat, "r1").await.unwrap();
        ticket.settle(Spend { tokens: 10, cost_usd: 1.25 });
        settle_until(&quota, "u", |used| used.spent_today_usd > 1.0).await;
        let refused = quota.admit(account("u", daily.clone()), Kind::Chat, "r2").await.err().unwrap();
        assert!(
            matches!(&refused, QuotaError::BudgetSpent { period: "daily", resets_at, retry_after, .. }
                if resets_at == "2026-02-01T00:00:00Z" && *retry_after == Duration::from_secs(60)),
            "{refused:?}"
        );
        assert_eq!(refused.retry_after_seconds(), Some(60));
        let monthly_tokens = Limits {
            monthly_tokens: Some(10),
            ..Limits::default()
        };
        let refused = quota.admit(account("u", monthly_tokens.clone()), Kind::Chat, "r3").await.err().unwrap();
        assert_eq!(refused.kind(), "monthly_tokens");
        assert!(refused.to_string().contains("token budget of 10 tokens"), "{refused}");
        clock.advance(Duration::from_secs(60)); // 2026-02-01: a new day and a new month
        assert!(quota.admit(account("u", daily), Kind::Chat, "r4").await.is_ok());
        assert!(quota.admit(account("u", monthly_tokens), Kind::Chat, "r5").await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn a_shared_budget_spent_by_one_member_refuses_the_next() {
    each_backend(async |counters, clock| {
        let quota = engine(counters, clock);
        let mut policy = LimitPolicy::default();
        policy.set_group_budget(
            "support",
            Limits {
                daily_budget_usd: Some(0.5),
                ..Limits::default()
            },
        );
        let member = |user| Subject {
            user_id: user,
            role: Some("user"),
            groups: &["support"],
        };
        let ticket = quota
            .admit(policy.scopes(&member("ann"), "m"), Kind::Chat, "r1")
            .await
            .unwrap();
        ticket.settle(Spend {
            tokens: 1,
            cost_usd: 0.75,
        });
        let support = ScopeKey::Group("support".into());
        scope_until(&quota, &support, |used| used.spent_today_usd > 0.5).await;
        let refused = quota
            .admit(policy.scopes(&member("bob"), "m"), Kind::Chat, "r2")
            .await
            .err()
            .unwrap();
        assert_eq!(refused.kind(), "daily_budget");
        assert!(refused.to_string().contains("group `support`"), "{refused}");
        // Someone outside the group is not held back.
        let outsider = Subject {
            user_id: "eve",
            role: Some("user"),
            groups: &[],
        };
        assert!(
            quota
                .admit(policy.scopes(&outsider, "m"), Kind::Chat, "r3")
                .await
                .is_ok()
        );
    })
    .await;
}

#[tokio::test]
async fn tasks_have_their_own_bucket_only_where_they_have_a_limit() {
    each_backend(async |counters, clock| {
        let quota = engine(counters, clock);
        let shared = Limits {
            requests_per_minute: Some(1),
            ..Limits::default()
        };
        drop(
            quota
                .admit(account("u", shared.clone()), Kind::Chat, "r1")
                .await
                .unwrap(),
        );
        // Without tasks_per_minute, claiming to be a task does not escape the limit.
        assert_eq!(
            quota
                .admit(account("u", shared.clone()), Kind::Task, "r2")
                .await
                .err()
                .unwrap()
                .kind(),
            "requests"
        );
        let apart = Limits {
            tasks_per_minute: Some(1),
            ..shared
        };
        drop(
            quota
                .admit(account("v", apart.clone()), Kind::Chat, "r3")
                .await
                .unwrap(),
        );
        drop(
            quota
                .admit(account("v", apart.clone()), Kind::Task, "r4")
                .await
                .unwrap(),
        );
        assert_eq!(
            quota
                .admit(account("v", apart.clone()), Kind::Task, "r5")
                .await
                .err()
                .unwrap()
                .kind(),
            "tasks"
        );
        assert_eq!(
            quota
                .admit(account("v", apart), Kind::Chat, "r6")
                .await
                .err()
                .unwrap()
                .kind(),
            "requests"
        );
    })
    .await;
}

#[tokio::test]
async fn a_scope_without_limits_is_counted_at_settlement() {
    each_backend(async |counters, clock| {
        let quota = engine(counters, clock);
        let ticket = quota
            .admit(account("free", Limits::default()), Kind::Chat, "r1")
            .await
            .unwrap();
        assert!(ticket.headers().pairs().is_empty());
        ticket.settle(Spend {
            tokens: 30,
            cost_usd: 0.25,
        });
        settle_until(&quota, "free", |used| {
            used.requests_this_minute == 1
                && used.tokens_today == 30
                && used.spent_this_month_usd == 0.25
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn spend_survives_a_restart_of_the_embedded_store() {
    let dir = std::env::temp_dir().join(format!("bff-quota-restart-{}", std::process::id()));
    let path = dir.join("quota.redb");
    let _ = std::fs::remove_dir_all(&dir);
    let clock = Arc::new(ManualClock::at(T0));
    let limits = Limits {
        monthly_budget_usd: Some(2.0),
        ..Limits::default()
    };
    {
        let counters = Arc::new(LocalCounters::persistent(&path).unwrap());
        let quota = engine(counters, Arc::clone(&clock));
        let ticket = quota
            .admit(account("u", limits.clone()), Kind::Chat, "r1")
            .await
            .unwrap();
        ticket.settle(Spend {
            tokens: 1,
            cost_usd: 2.5,
        });
        settle_until(&quota, "u", |used| used.spent_this_month_usd == 2.5).await;
        quota.flush().await;
    }
    let quota = engine(Arc::new(LocalCounters::persistent(&path).unwrap()), clock);
    let used = quota
        .counters()
        .used(&ScopeKey::User("u".into()), &quota.windows())
        .await
        .unwrap();
    assert_eq!(
        (used.spent_this_month_usd, used.tokens_this_month),
        (2.5, 1)
    );
    assert_eq!(
        quota
            .admit(account("u", limits), Kind::Chat, "r2")
            .await
            .err()
            .unwrap()
            .kind(),
        "monthly_budget"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_fail_mode_decides_when_redis_is_gone_and_nothing_hangs() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let limits = Limits {
        requests_per_minute: Some(1),
        ..Limits::default()
    };
    let counters = |_: ()| {
        let connection = RedisConnection::new(&redis.url, Duration::from_millis(200)).unwrap();
        Arc::new(RedisCounters::new(
            Arc::new(connection),
            Duration::from_millis(200),
        ))
    };
    let closed = engine(counters(()), Arc::new(ManualClock::at(T0)));
    let open = Arc::new(Quota::new(
        counters(()),
        Arc::new(ManualClock::at(T0)),
        FailMode::Open,
        Duration::from_secs(60),
    ));
    redis.kill();
    let refused = closed
        .admit(account("u", limits.clone()), Kind::Chat, "r1")
        .await
        .err()
        .unwrap();
    assert_eq!(refused.kind(), "unavailable");
    assert!(
        open.admit(account("u", limits.clone()), Kind::Chat, "r2")
            .await
            .is_ok()
    );
    assert_eq!(
        closed
            .backend_errors()
            .admit
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    redis.restart().unwrap();
    assert!(
        closed
            .admit(account("u", limits), Kind::Chat, "r3")
            .await
            .is_ok()
    );
}
