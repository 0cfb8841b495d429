//! SNS: the topic the groups notify, and its subscription of the queue
//! (raw message delivery off: nodereaper parses the envelope).

use super::{ChangeAction, Known, Resource, ResourceKind, Setup, SetupError};

/// The subscription attribute setup keeps `false`.
const RAW_DELIVERY: &str = "RawMessageDelivery";

impl Setup<'_> {
    /// Finds the topic `<name>` or creates it.
    pub(super) async fn topic(&mut self) -> Result<Known, SetupError> {
        let name = &self.spec.name;
        let resource = Resource::new(ResourceKind::SnsTopic, name);
        let mut pages = self.sns.list_topics().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| SetupError::aws(&resource, "SNS", "ListTopics", e))?;
            let found = page
                .topics()
                .iter()
                .filter_map(|t| t.topic_arn())
                .find(|a| a.rsplit(':').next() == Some(name));
            if let Some(arn) = found {
                self.report.push(resource, ChangeAction::Unchanged, arn);
                return Ok(Known {
                    arn: arn.to_string(),
                    url: None,
                    exists: true,
                });
            }
        }
        let arn = if self.dry() {
            self.predict_arn("sns", name).await?
        } else {
            let out = self
                .sns
                .create_topic()
                .name(name)
                .send()
                .await
                .map_err(|e| SetupError::aws(&resource, "SNS", "CreateTopic", e))?;
            let arn = out.topic_arn().ok_or_else(|| {
                SetupError::answer(&resource, "SNS", "CreateTopic", "no TopicArn")
            })?;
            arn.to_string()
        };
        self.report
            .push(resource, ChangeAction::planned(self.dry(), false), &arn);
        Ok(Known {
            arn,
            url: None,
            exists: !self.dry(),
        })
    }

    /// Topic -> queue, raw delivery off (nodereaper parses the envelope).
    pub(super) async fn subscription(
        &mut self,
        topic: &Known,
        queue: &Known,
    ) -> Result<(), SetupError> {
        let resource = Resource::new(ResourceKind::SnsSubscription, &self.spec.name);
        let detail = format!(
            "{} -> {} (sqs, RawMessageDelivery=false)",
            topic.arn, queue.arn
        );
        let existing = if topic.exists {
            self.find_subscription(&resource, topic, queue).await?
        } else {
            None
        };
        let Some(arn) = existing else {
            if !self.dry() {
                self.subscribe(&resource, topic, queue).await?;
            }
            self.report
                .push(resource, ChangeAction::planned(self.dry(), false), detail);
            return Ok(());
        };
        if arn == "PendingConfirmation" {
            self.report.warnings.push(format!(
                "{resource}: pending confirmation (queue in another account?)"
            ));
            self.report.push(
                resource,
                ChangeAction::Unchanged,
                format!("{detail}, pending confirmation"),
            );
            return Ok(());
        }
        if !self.raw_delivery(&resource, &arn).await? {
            self.report.push(resource, ChangeAction::Unchanged, detail);
            return Ok(());
        }
        if !self.dry() {
            self.turn_off_raw_delivery(&resource, &arn).await?;
        }
        let detail = "RawMessageDelivery: true -> false (nodereaper parses the SNS envelope)";
        self.report
            .push(resource, ChangeAction::planned(self.dry(), true), detail);
        Ok(())
    }

    /// The ARN of the topic's `sqs` subscription of the queue, if any (it
    /// is `PendingConfirmation` until confirmed).
    async fn find_subscription(
        &self,
        resource: &Resource,
        topic: &Known,
        queue: &Known,
    ) -> Result<Option<String>, SetupError> {
        let mut pages = self
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(&topic.arn)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| SetupError::aws(resource, "SNS", "ListSubscriptionsByTopic", e))?;
            let mut subs = page.subscriptions().iter();
            let ours = subs
                .find(|s| s.protocol() == Some("sqs") && s.endpoint() == Some(queue.arn.as_str()));
            if let Some(sub) = ours {
                return Ok(sub.subscription_arn().map(str::to_string));
            }
        }
        Ok(None)
    }

    /// Subscribes the queue to the topic, raw delivery off.
    async fn subscribe(
        &self,
        resource: &Resource,
        topic: &Known,
        queue: &Known,
    ) -> Result<(), SetupError> {
        self.sns
            .subscribe()
            .topic_arn(&topic.arn)
            .protocol("sqs")
            .endpoint(&queue.arn)
            .attributes(RAW_DELIVERY, "false")
            .return_subscription_arn(true)
            .send()
            .await
            .map_err(|e| SetupError::aws(resource, "SNS", "Subscribe", e))?;
        Ok(())
    }

    /// Whether the subscription `arn` has raw message delivery on.
    async fn raw_delivery(&self, resource: &Resource, arn: &str) -> Result<bool, SetupError> {
        let attrs = self
            .sns
            .get_subscription_attributes()
            .subscription_arn(arn)
            .send()
            .await
            .map_err(|e| SetupError::aws(resource, "SNS", "GetSubscriptionAttributes", e))?;
        Ok(attrs
            .attributes()
            .and_then(|a| a.get(RAW_DELIVERY))
            .is_some_and(|v| v == "true"))
    }

    /// Sets the subscription `arn`'s raw message delivery to `false`.
    async fn turn_off_raw_delivery(
        &self,
        resource: &Resource,
        arn: &str,
    ) -> Result<(), SetupError> {
        self.sns
            .set_subscription_attributes()
            .subscription_arn(arn)
            .attribute_name(RAW_DELIVERY)
            .attribute_value("false")
            .send()
            .await
            .map_err(|e| SetupError::aws(resource, "SNS", "SetSubscriptionAttributes", e))?;
        Ok(())
    }
}
