//! What the kube-client tests of the fake server share: a real kube client
//! connected to it.

use accel_fake_apiserver::FakeApiServer;
use kube::Client;

pub fn client(s: &FakeApiServer) -> Client {
    Client::try_from(s.kube_config()).expect("client from config")
}
