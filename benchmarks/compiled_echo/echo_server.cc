// A compiled gRPC server answering GetOnlineFeatures with preset bytes (issue 22, on paper).
//
//   echo_server PORT RESPONSE_FILE
//
// RESPONSE_FILE holds one serialized GetOnlineFeaturesResponse, captured from `featurestore
// serve` (benchmarks/compiled.py does it). Every call to the method gets those bytes, whatever
// it asks: this measures what gRPC itself costs in C++ (HTTP/2, framing, the call's life), the
// floor of a compiled serving core. No generated message code: a callback generic service
// reads the request as a ByteBuffer and writes a ByteBuffer that shares the preset slice.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/server_callback.h>

#include <csignal>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

namespace {

const char kMethod[] = "/featurestore.serving.v1.FeatureServing/GetOnlineFeatures";

// One call: read the request, answer the preset bytes and OK in one batch, then free itself.
class EchoReactor : public grpc::ServerGenericBidiReactor {
 public:
  explicit EchoReactor(const grpc::ByteBuffer& response) : response_(response) { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request message"));
      return;
    }
    StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
  }

  void OnDone() override { delete this; }

 private:
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;  // a copy shares the slice (a reference count), not the bytes
};

class Unimplemented : public grpc::ServerGenericBidiReactor {
 public:
  Unimplemented() { Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "only GetOnlineFeatures")); }
  void OnDone() override { delete this; }
};

class EchoService : public grpc::CallbackGenericService {
 public:
  explicit EchoService(const std::string& bytes) {
    grpc::Slice slice(bytes);
    response_ = grpc::ByteBuffer(&slice, 1);
  }

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* context) override {
    if (context->method() == kMethod) return new EchoReactor(response_);
    return new Unimplemented();
  }

 private:
  grpc::ByteBuffer response_;
};

std::unique_ptr<grpc::Server> server;

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: echo_server PORT RESPONSE_FILE\n";
    return 2;
  }
  std::ifstream file(argv[2], std::ios::binary);
  if (!file) {
    std::cerr << "cannot read " << argv[2] << "\n";
    return 2;
  }
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  EchoService service(bytes);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(std::string("127.0.0.1:") + argv[1], grpc::InsecureServerCredentials());
  builder.RegisterCallbackGenericService(&service);
  server = builder.BuildAndStart();
  if (!server) {
    std::cerr << "cannot listen on port " << argv[1] << "\n";
    return 1;
  }
  // SIGTERM ends the process (the default action); the benchmark reads its CPU time before.
  server->Wait();
  return 0;
}
