//! `iocloud serve --demo`: a living network for a newcomer. A demo provider organisation with
//! $IO staked and a few hundred machines across the regions, each run by a simulated agent
//! over real HTTP against this very server. Safe to start again on the same database: the
//! provider and its machines are found again (with fresh agent tokens).

use iocloud_control::accounts::SignUp;
use iocloud_control::providers::stake::StakeRequest;
use iocloud_control::providers::{DeviceSpec, DeviceStatus};
use iocloud_control::{Actor, Control, PageRequest, Principal, Role};

use crate::simulator::{self, SimDevice, SimOptions};

pub const PROVIDER_EMAIL: &str = "demo-provider@iocloud.dev";
pub const PROVIDER_PASSWORD: &str = "demo provider password";
const DEVICES: usize = 300;

/// Seeds the demo provider (once) and starts its agents against `base`.
pub async fn start(control: &Control, base: &str) -> anyhow::Result<()> {
    let actor = provider(control).await?;
    let devices = machines(control, &actor).await?;
    tracing::info!(devices = devices.len(), "demo: simulated agents starting");
    simulator::spawn(
        base,
        devices,
        SimOptions {
            node_failure_rate: 0.01,
            offline_rate: 0.0002,
            ..SimOptions::default()
        },
    );
    Ok(())
}

/// The demo provider organisation, acting as its owner (with the operator flag, to grant
/// itself the $IO it stakes).
async fn provider(control: &Control) -> anyhow::Result<Actor> {
    let session = match control
        .accounts
        .log_in(PROVIDER_EMAIL, PROVIDER_PASSWORD, None)
        .await
    {
        Ok(s) => s,
        Err(_) => {
            control
                .accounts
                .sign_up(SignUp {
                    email: PROVIDER_EMAIL,
                    password: PROVIDER_PASSWORD,
                    name: "Demo Provider",
                    org_name: Some("Demo GPU Network"),
                    invitation: None,
                })
                .await?
        }
    };
    let actor = Actor {
        principal: Principal::User {
            user_id: session.user.id.clone(),
            session_id: String::new(),
            role: Role::Owner,
        },
        org_id: iocloud_db::ids::OrgId::trusted(session.organization.id.clone()),
        is_operator: true,
    };
    control
        .billing
        .grant_credit(
            &actor,
            &actor.org_id,
            "5000000",
            "IO",
            "demo provider stake",
            Some("demo-io"),
        )
        .await?;
    control
        .stake
        .stake(
            &actor,
            StakeRequest {
                amount: "5000000".into(),
                reference: Some("demo-stake".into()),
            },
        )
        .await?;
    Ok(actor)
}

/// The demo machines with working tokens: registered the first time, re-keyed after.
async fn machines(control: &Control, actor: &Actor) -> anyhow::Result<Vec<SimDevice>> {
    let mut out = Vec::with_capacity(DEVICES);
    let mut page = PageRequest::parse(None, Some(200))?;
    loop {
        let listed = control.devices.list(actor, &page, None).await?;
        for d in listed.items {
            if d.status == DeviceStatus::Retired {
                continue;
            }
            let rotated = control
                .devices
                .rotate_token(actor, &iocloud_db::ids::DeviceId::trusted(d.id.clone()))
                .await?;
            out.push(SimDevice {
                id: d.id,
                token: rotated.token,
                gpus: d.gpu_count,
            });
        }
        match listed.next_cursor {
            Some(c) => page = PageRequest::parse(Some(&c), Some(200))?,
            None => break,
        }
    }
    if out.is_empty() {
        for spec in simulator::sample_specs(DEVICES, 42, "demo") {
            let spec: DeviceSpec = serde_json::from_value(spec)?;
            let created = control.devices.register(actor, spec).await?;
            out.push(SimDevice {
                id: created.device.id,
                token: created.token,
                gpus: created.device.gpu_count,
            });
        }
    }
    Ok(out)
}
