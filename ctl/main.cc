// cofferctl: see ctl/ctl.h. Only wires argv and the standard streams to ctl::Run().
#include <unistd.h>

#include <iostream>

#include "ctl/ctl.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  coffer::ctl::Io io{std::cout, std::cerr, isatty(2) == 1};
  return coffer::ctl::Run(args, io);
}
