//! A request whose string field is not UTF-8 gets INVALID_ARGUMENT (tonic alone says INTERNAL), on a
//! real server on a loopback port, sent as raw bytes.

use std::net::SocketAddr;

use prost::Message;
use scot_proto::target_service_server::{TargetService, TargetServiceServer};
use scot_proto::{GenerateEvent, GenerateRequest, SelectRequest, SelectResponse};
use tonic::{Code, Request, Response, Status};

struct Fake;

#[tonic::async_trait]
impl TargetService for Fake {
    async fn select(&self, _: Request<SelectRequest>) -> Result<Response<SelectResponse>, Status> {
        Ok(Response::new(SelectResponse {
            chosen: 1,
            ..Default::default()
        }))
    }

    type GenerateStream = tokio_stream::Empty<Result<GenerateEvent, Status>>;

    async fn generate(
        &self,
        _: Request<GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

#[path = "shared/raw_codec.rs"]
mod raw_codec;

type RawCodec = raw_codec::RawCodec<SelectResponse>;

async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(scot_proto::RequestDecodeLayer)
            .add_service(TargetServiceServer::new(Fake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

async fn select_raw(addr: SocketAddr, body: Vec<u8>) -> Result<SelectResponse, Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/scot.v1.TargetService/Select");
    grpc.unary(Request::new(body), path, RawCodec::default())
        .await
        .map(Response::into_inner)
}

#[tokio::test]
async fn undecodable_requests_are_invalid_argument() {
    let addr = serve().await;
    let good = SelectRequest {
        problem: "ABCD".into(),
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(select_raw(addr, good.clone()).await.unwrap().chosen, 1);

    let mut not_utf8 = good.clone();
    let at = not_utf8.windows(4).position(|w| w == b"ABCD").unwrap();
    not_utf8[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
    let status = select_raw(addr, not_utf8).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("UTF-8"), "{status:?}");

    // A length prefix that runs past the message.
    let truncated = good[..good.len() - 2].to_vec();
    let status = select_raw(addr, truncated).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // A handler's own INTERNAL stays INTERNAL (only decode failures are remapped): the fake's
    // Generate answers UNIMPLEMENTED, which passes through unchanged.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = scot_proto::target_service_client::TargetServiceClient::new(channel)
        .generate(GenerateRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}
