//! Two people, one team budget: each may send two requests a minute, and the team shares 100
//! tokens a day. Counters are in process here (`LocalCounters`); with feature `redis`,
//! `RedisCounters` shares them across replicas.
//!
//! `cargo run -p bff-quota --example team_budget`
#![allow(clippy::print_stdout)] // an example's output

use bff_quota::{
    FailMode, Kind, LimitPolicy, Limits, LocalCounters, Quota, Spend, Subject, SystemClock,
};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut policy = LimitPolicy::default();
    let per_person = Limits {
        requests_per_minute: Some(2),
        ..Limits::default()
    };
    policy.set_role("user", per_person, vec![]);
    let team = Limits {
        daily_tokens: Some(100),
        ..Limits::default()
    };
    policy.set_group_budget("support", team);
    let quota = Arc::new(Quota::new(
        Arc::new(LocalCounters::in_memory()),
        Arc::new(SystemClock),
        FailMode::Closed,
        Duration::from_secs(660),
    ));

    let groups = ["support"];
    let people = ["ann", "ben"].map(|user_id| Subject {
        user_id,
        role: Some("user"),
        groups: &groups,
    });
    for (n, person) in people.iter().cycle().take(5).enumerate() {
        let scopes = policy.scopes(person, "gpt-4o-mini");
        match quota
            .admit(scopes, Kind::Chat, &format!("request-{n}"))
            .await
        {
            Ok(ticket) => {
                // What the answer used; settled once the request ends.
                ticket.settle(Spend {
                    tokens: 40,
                    cost_usd: 0.0004,
                });
                println!("{}: admitted, 40 tokens", person.user_id);
            }
            Err(refused) => println!("{}: refused: {refused}", person.user_id),
        }
        tokio::time::sleep(Duration::from_millis(10)).await; // let the settlement land
    }
}
