/* corral-agent: PID 1 of a corrald sandbox; the work is in libcorral. */
#include <corral/agent.h>

int main(void)
{
  return corral_agent_main();
}
