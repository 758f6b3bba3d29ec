//! Mapping one Metal event to a CloudEvent, and mapping plus serializing it
//! to the structured-mode JSON body.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use metal_cloudevents::{
    Context, DeviceRef, MapOptions, OrganizationRef, ProjectRef, to_cloudevent, to_json_value,
};
use metal_events::Event;

/// A typical device event, as a project's event list carries it.
const EVENT: &str = r##"{
    "id": "cbe6eed5-b2ac-4bdb-bd82-b7b88866e200",
    "type": "provisioning.110",
    "body": "Provision complete! Your device is ready to go.",
    "state": null,
    "created_at": "2023-02-10T03:56:32Z",
    "href": "/metal/v1/events/cbe6eed5-b2ac-4bdb-bd82-b7b88866e200",
    "interpolated": "Provision complete! Your device is ready to go.",
    "relationships": [{"href": "#0caf4d6d-fafc-470b-86b1-d889eb838afa"}],
    "modified_by": {"id": "3f0c1d2e-9a8b-4c7d-8e6f-5a4b3c2d1e0f", "full_name": "Provisioner"},
    "ip": "147.75.84.10"
}"##;

fn bench(c: &mut Criterion) {
    let event: Event = serde_json::from_str(EVENT).expect("the bench event parses");
    let ctx = Context::new(OrganizationRef::new(
        "ed49fa53-743f-43aa-836b-e24f88f94d9c",
        "Direktiv",
    ))
    .with_project(ProjectRef::new(
        "d894d0eb-2b6c-4741-b106-c7cb76018d32",
        "Direktiv EKS Project",
    ))
    .with_device(DeviceRef::new(
        "0caf4d6d-fafc-470b-86b1-d889eb838afa",
        Some("c3-small-x86-01".to_owned()),
    ));
    let opts = MapOptions::default();

    let mut group = c.benchmark_group("metal-cloudevents");
    group.throughput(Throughput::Elements(1));
    group.bench_function("map", |b| {
        b.iter(|| to_cloudevent(black_box(&event), black_box(&ctx), &opts).expect("maps"));
    });
    group.bench_function("map_and_serialize", |b| {
        b.iter(|| {
            let ce = to_cloudevent(black_box(&event), black_box(&ctx), &opts).expect("maps");
            serde_json::to_vec(&to_json_value(&ce).expect("serializes")).expect("writes")
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
