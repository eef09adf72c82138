//! `feiyan topic-add`: the managed list of topic tags.

use clap::Args;

use crate::catalog::Catalog;

/// `feiyan topic-add NAME`
#[derive(Args)]
pub struct TopicAdd {
    /// Topic name.
    name: String,
}

pub async fn add(catalog: &Catalog, TopicAdd { name }: TopicAdd) -> anyhow::Result<()> {
    println!("topic {}", catalog.add_topic(&name).await?);
    Ok(())
}
