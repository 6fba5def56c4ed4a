// Host side: the per-device facts a launcher picks its kernel by, cached per device.
#pragma once

#include <mutex>
#include <unordered_map>

#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

namespace fastgan {
namespace cuda {

struct DeviceInfo {
  int sms = 1;             // streaming multiprocessors
  bool sm80_code = false;  // the device is sm_80+ AND this build carries sm_80+ code for it
};

// `Probe` is a kernel whose body exists only where __CUDA_ARCH__ >= 800 (a tensor-core or
// int8 mma kernel). cudaFuncGetAttributes' ptxVersion is the virtual arch the code that will
// run was compiled from (a PTX-JIT of compute_75 on an sm_80 GPU reports 75), so a build
// without sm_80 code is caught as well as an older GPU. One cache per probe and device.
template <auto Probe>
DeviceInfo device_info_for(int device) {
  static std::mutex mu;
  static std::unordered_map<int, DeviceInfo> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(device);
  if (it != cache.end()) return it->second;
  DeviceInfo info;
  int major = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&info.sms, cudaDevAttrMultiProcessorCount, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  cudaFuncAttributes attr;
  const cudaError_t err = cudaFuncGetAttributes(&attr, Probe);
  if (err == cudaSuccess)
    info.sm80_code = major >= 8 && attr.ptxVersion >= 80;
  else
    (void)cudaGetLastError();  // no image for this device: the SIMT launch will report it
  cache.emplace(device, info);
  return info;
}

}  // namespace cuda
}  // namespace fastgan
